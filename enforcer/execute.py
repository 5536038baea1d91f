"""Carry out one claimed action on its device, or reconcile one a crashed worker left behind.

The order is fixed: (pre-check if an earlier attempt reached the device) → backup → kill switch
→ apply → save → verify. Everything sent and received is stored as it happens (sanitized), every
batch is audited, and the outcome is exactly one of: verified (the device shows the wanted
state), failed (permanent, a person may retry), approved again (transient, with backoff; or
handed back untouched because of the kill switch or a shutdown). A rejected command puts back the
state the backup showed before the action fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from netmiko import BaseConnection
from sqlalchemy.orm import Session

from core import audit
from core.db import session_factory
from core.models import ActionKind, ActionState, Device, EnforcementAction
from core.settings import Settings
from core.timeutil import utcnow
from enforcer import control, queue
from enforcer.drivers import Batch, Driver, get_driver
from enforcer.errors import CommandRejected, DeviceError
from enforcer.session import Credentials, credentials, open_session
from enforcer.targets import Target
from enforcer.transcript import Transcript, sanitize

StepHook = Callable[[str, int], None]


@dataclass(frozen=True)
class Outcome:
    """How one job ended: the action's new state and why."""

    action_id: int
    state: ActionState
    detail: str
    seconds: float


@dataclass
class _Job:
    """What one job needs, read once from the database before the SSH session opens."""

    action_id: int
    kind: ActionKind
    target: Target
    commands: list[str]
    attempts: int
    reached_before: bool
    creds: Credentials
    transcript: Transcript


class Executor:
    """Runs jobs for one worker; safe to share between threads (one session per job)."""

    def __init__(
        self,
        database_url: str,
        worker: str,
        settings: Settings,
        stop: threading.Event,
        backoff: Callable[[int], float],
        lease_s: float,
        on_step: StepHook | None = None,
    ) -> None:
        self.database_url = database_url
        self.worker = worker
        self.settings = settings
        self.stop = stop
        self.backoff = backoff
        self.lease_s = lease_s
        self.on_step = on_step
        self.timeout = settings.enforcement_ssh_timeout_s

    # --- helpers --------------------------------------------------------------------------

    def _session(self) -> Session:
        return session_factory(self.database_url)()

    def _load(self, s: Session, action_id: int) -> tuple[EnforcementAction, _Job]:
        action = queue.get(s, action_id)
        device = s.get(Device, action.device_id)
        assert device is not None
        creds = credentials(device)
        prior = [action.transcript] if action.transcript else []
        job = _Job(
            action_id=action.id,
            kind=action.kind,
            target=Target.from_json(action.target),
            commands=list(action.commands or []),
            attempts=action.attempts,
            reached_before=action.transcript is not None,
            creds=creds,
            transcript=Transcript(secrets=creds.secrets(), sections=prior),
        )
        return action, job

    def _stop_reason(self, s: Session) -> str | None:
        if self.stop.is_set():
            return "worker shutting down: handed back before any change"
        paused = control.is_paused(s)
        s.commit()
        if paused:
            return "enforcement paused (kill switch): handed back before any change"
        return None

    def _step(self, name: str, action_id: int) -> None:
        if self.on_step is not None:
            self.on_step(name, action_id)

    def _persist(self, s: Session, action: EnforcementAction, job: _Job, **fields: Any) -> None:
        """Store progress and extend the lease: a live worker's action never looks stale."""
        queue.record_progress(
            s,
            action,
            transcript=job.transcript.render(),
            lease_until=utcnow() + timedelta(seconds=self.lease_s),
            **fields,
        )
        s.commit()

    def _audit_batch(
        self, s: Session, job: _Job, batch: Batch, ok: bool = True, detail: str = ""
    ) -> None:
        audit.record(
            s,
            actor=self.worker,
            action="enforcement.batch",
            object_type=queue.OBJECT,
            object_id=job.action_id,
            reason=detail or batch.label,
            data={
                "batch": batch.label,
                "device": job.target.device,
                "commands": [sanitize(c, job.creds.secrets()) for c in batch.commands],
                "ok": ok,
            },
        )

    def _record(self, job: _Job, batch: Batch) -> None:
        job.transcript.add(batch.label, batch.commands, batch.output)

    def _verify(
        self, s: Session, action: EnforcementAction, job: _Job, driver: Driver, conn: BaseConnection
    ) -> tuple[bool, str]:
        verdict = driver.verify(conn, job.kind, job.target, self.timeout)
        commands = driver.verify_commands(job.target)
        self._record(job, Batch("verify", commands, verdict.output))
        self._audit_batch(
            s, job, Batch("verify", commands, ""), ok=verdict.ok, detail=verdict.detail
        )
        audit.record(
            s,
            actor=self.worker,
            action="enforcement.verification",
            object_type=queue.OBJECT,
            object_id=job.action_id,
            reason=verdict.detail,
            data={"ok": verdict.ok, "kind": str(job.kind), "device": job.target.device},
        )
        self._persist(s, action, job, verification=sanitize(verdict.output, job.creds.secrets()))
        return verdict.ok, verdict.detail

    def _save(
        self, s: Session, action: EnforcementAction, job: _Job, driver: Driver, conn: BaseConnection
    ) -> None:
        if not driver.needs_save:
            return
        batch = driver.save(conn, self.timeout)
        self._record(job, batch)
        self._audit_batch(s, job, batch)
        self._persist(s, action, job)

    # --- one action -----------------------------------------------------------------------

    def run(self, action_id: int) -> Outcome:
        """Execute a claimed (``executing``) action to its outcome."""
        started = time.perf_counter()
        s = self._session()
        try:
            action, job = self._load(s, action_id)
            state, detail = self._run(s, action, job)
            s.commit()
            return Outcome(action_id, state, detail, time.perf_counter() - started)
        finally:
            s.close()

    def _run(self, s: Session, action: EnforcementAction, job: _Job) -> tuple[ActionState, str]:
        reason = self._stop_reason(s)
        if reason:
            queue.hand_back(s, action, self.worker, reason)
            return ActionState.APPROVED, reason
        driver = get_driver(job.target.device_type)
        try:
            with open_session(driver, job.target, job.creds, self.timeout) as conn:
                job.transcript.note(
                    f"attempt {job.attempts} by {self.worker}: session to {job.target.device}"
                )
                return self._on_device(s, action, job, driver, conn)
        except DeviceError as exc:
            s.rollback()
            action = queue.get(s, job.action_id)
            job.transcript.note(f"session ended: {exc}")
            self._persist(s, action, job)
            if exc.transient:
                delay = self.backoff(action.attempts)
                queue.retry_later(
                    s, action, self.worker, str(exc), delay, self.settings.enforcement_max_attempts
                )
                return action.state, str(exc)
            queue.fail(s, action, self.worker, str(exc))
            return ActionState.FAILED, str(exc)

    def _on_device(
        self, s: Session, action: EnforcementAction, job: _Job, driver: Driver, conn: BaseConnection
    ) -> tuple[ActionState, str]:
        if job.reached_before:
            # An earlier attempt reached the device and may have changed it: read first, so
            # that an action is never applied twice.
            ok, detail = self._verify(s, action, job, driver, conn)
            if ok:
                self._save(s, action, job, driver, conn)
                detail = f"already in the wanted state, nothing re-applied: {detail}"
                queue.verified(s, action, self.worker, detail, reapplied=False)
                return ActionState.VERIFIED, detail
        backup = driver.backup(conn, job.target, self.timeout)
        self._record(job, backup)
        self._audit_batch(s, job, backup)
        self._persist(s, action, job, backup=sanitize(backup.output, job.creds.secrets()))
        self._step("after_backup", job.action_id)
        reason = self._stop_reason(s)
        if reason:
            job.transcript.note(reason)
            self._persist(s, action, job)
            queue.hand_back(s, action, self.worker, reason)
            return ActionState.APPROVED, reason
        self._step("before_apply", job.action_id)
        try:
            applied = driver.apply(conn, job.commands, self.timeout)
        except CommandRejected as exc:
            return self._rollback(s, action, job, driver, conn, backup, exc)
        self._record(job, applied)
        self._audit_batch(s, job, applied)
        self._persist(s, action, job)
        self._save(s, action, job, driver, conn)
        self._step("before_verify", job.action_id)
        ok, detail = self._verify(s, action, job, driver, conn)
        if ok:
            queue.verified(s, action, self.worker, detail, reapplied=True)
            return ActionState.VERIFIED, detail
        queue.fail(s, action, self.worker, f"verification failed: {detail}")
        return ActionState.FAILED, detail

    def _rollback(
        self,
        s: Session,
        action: EnforcementAction,
        job: _Job,
        driver: Driver,
        conn: BaseConnection,
        backup: Batch,
        exc: CommandRejected,
    ) -> tuple[ActionState, str]:
        """A command was rejected: put back what the backup showed, then fail the action."""
        rejected = Batch("apply (rejected)", job.commands, str(exc))
        self._record(job, rejected)
        self._audit_batch(s, job, rejected, ok=False, detail=str(exc))
        current = driver.backup(conn, job.target, self.timeout)
        self._record(job, Batch("re-read after rejection", current.commands, current.output))
        commands = driver.rollback_commands(job.target, backup.output, current.output)
        if not commands:
            error = f"command rejected, device unchanged (checked against the backup): {exc}"
        else:
            try:
                restored = driver.apply(conn, commands, self.timeout)
                self._record(job, Batch("rollback", commands, restored.output))
                self._audit_batch(s, job, Batch("rollback", commands, ""), detail="backup restored")
                error = f"command rejected, backup restored: {exc}"
            except CommandRejected as exc2:
                self._record(job, Batch("rollback (rejected)", commands, str(exc2)))
                self._audit_batch(
                    s, job, Batch("rollback", commands, ""), ok=False, detail=str(exc2)
                )
                error = f"command rejected and the rollback was rejected too: {exc}; {exc2}"
        self._persist(s, action, job)
        queue.fail(s, action, self.worker, error, rejected=True)
        return ActionState.FAILED, error

    # --- reconciliation -------------------------------------------------------------------

    def reconcile(self, action_id: int) -> Outcome | None:
        """Settle an action a crashed worker left ``executing`` by reading the device: in the
        wanted state → verified without re-applying; otherwise approved for one more attempt
        (whose pre-check reads the device again). None if another worker holds it."""
        started = time.perf_counter()
        s = self._session()
        try:
            if not queue.take_over(s, action_id, self.worker, self.lease_s):
                s.rollback()
                return None
            s.commit()
            action, job = self._load(s, action_id)
            job.transcript.note(f"reconciliation by {self.worker} after an interrupted attempt")
            state, detail = self._reconcile(s, action, job)
            s.commit()
            return Outcome(action_id, state, detail, time.perf_counter() - started)
        finally:
            s.close()

    def _reconcile(
        self, s: Session, action: EnforcementAction, job: _Job
    ) -> tuple[ActionState, str]:
        if not action.target:
            reason = "reconciled: the interrupted attempt never resolved a target"
            queue.hand_back(s, action, self.worker, reason)
            return ActionState.APPROVED, reason
        driver = get_driver(job.target.device_type)
        try:
            with open_session(driver, job.target, job.creds, self.timeout) as conn:
                ok, detail = self._verify(s, action, job, driver, conn)
                if ok:
                    self._save(s, action, job, driver, conn)
                    detail = f"reconciled: device already in the wanted state: {detail}"
                    queue.verified(s, action, self.worker, detail, reapplied=False)
                    return ActionState.VERIFIED, detail
        except DeviceError as exc:
            s.rollback()
            action = queue.get(s, job.action_id)
            reason = f"reconciliation could not read the device ({exc}); retried later"
            job.transcript.note(reason)
            self._persist(s, action, job)
            queue.requeue(s, action, self.worker, reason, self.backoff(action.attempts))
            return ActionState.APPROVED, reason
        reason = f"reconciled: device not in the wanted state ({detail}); one more attempt"
        job.transcript.note(reason)
        self._persist(s, action, job)
        queue.requeue(s, action, self.worker, reason)
        return ActionState.APPROVED, reason
