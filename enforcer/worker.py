"""The enforcement worker: reconcile, apply the rails, claim, and run actions in parallel
across devices (one SSH session per device at a time; netmiko is blocking, so threads).

``run_once`` is one pass: settle what a crashed worker left ``executing``, evaluate the circuit
breaker, then walk the due approved actions oldest first, refusing, holding or claiming each, and
run the claimed ones (at most one per device) to their outcomes. ``run`` repeats passes every
``enforcement_poll_s`` until its stop event is set, and between passes looks every ``wake_s``
(one indexed query) for an action approved, or come due after a backoff, since the last pass:
one is started within ``wake_s`` instead of up to ``enforcement_poll_s`` later. An in-flight
action is finished if it already changed the device, or handed back untouched if it had not."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import session_factory
from core.models import ActionKind, ActionState, EnforcementAction, Institution
from core.settings import Settings, get_settings
from core.timeutil import utcnow
from enforcer import control, queue, rails
from enforcer.errors import EnforcementError
from enforcer.execute import Executor, Outcome, StepHook
from enforcer.targets import Target

log = logging.getLogger(__name__)


def default_name() -> str:
    """Stable across restarts on one host, so a restarted worker reconciles its own actions
    at once instead of waiting for their leases to run out."""
    return os.environ.get("EDGEWARDEN_WORKER_NAME") or f"worker@{socket.gethostname()}"


@dataclass
class RunReport:
    """What one pass did."""

    paused: bool = False
    breaker_tripped: bool = False
    reconciled: list[Outcome] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    held: dict[int, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)

    @property
    def claimed(self) -> int:
        return len(self.outcomes)


class Worker:
    """Executes approved enforcement actions from the database at ``database_url``."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        name: str | None = None,
        settings: Settings | None = None,
        max_parallel: int = 32,
        backoff_base_s: float = 5.0,
        backoff_max_s: float = 300.0,
        lease_s: float | None = None,
        on_step: StepHook | None = None,
        wake_s: float = 0.05,
    ) -> None:
        self.settings = settings or get_settings()
        self.database_url = database_url or self.settings.database_url
        self.name = name or default_name()
        self.max_parallel = max_parallel
        self.wake_s = wake_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        # Renewed after every batch, so it only needs to outlast one batch plus margins.
        self.lease_s = lease_s or max(60.0, 6 * self.settings.enforcement_ssh_timeout_s)
        self.stop_event = threading.Event()
        self.executor = Executor(
            self.database_url,
            self.name,
            self.settings,
            self.stop_event,
            self.backoff,
            self.lease_s,
            on_step,
        )

    def backoff(self, attempts: int) -> float:
        """Exponential backoff for transient failures: base, 2×base, 4×base … capped."""
        return min(self.backoff_base_s * 2 ** max(0, attempts - 1), self.backoff_max_s)

    def _session(self) -> Session:
        return session_factory(self.database_url)()

    # --- one pass -------------------------------------------------------------------------

    def run_once(self) -> RunReport:
        report = RunReport()
        report.reconciled = self.reconcile()
        # Each claimed action starts on its own thread at once: a device's session does not
        # wait for the claims of the actions behind it.
        with ThreadPoolExecutor(
            max_workers=self.max_parallel, thread_name_prefix="enforce"
        ) as pool:
            started: list[Future[list[Outcome]]] = []

            def start(ids: list[int]) -> None:
                started.append(pool.submit(self._run_group, ids, self.executor.run))

            with self._session() as s:
                if control.is_paused(s):
                    report.paused = True
                    return report
                report.breaker_tripped = rails.evaluate_breaker(s, self.settings)
                s.commit()
                self._claim(s, report, start)
            report.outcomes = [o for f in started for o in f.result()]
        return report

    def reconcile(self) -> list[Outcome]:
        """Settle every action left ``executing`` by this worker's name or an expired lease."""
        with self._session() as s:
            ids = queue.stale(s, self.name)
        outcomes = self._parallel(self._by_device(ids), self.executor.reconcile)
        return [o for o in outcomes if o is not None]

    def _by_device(self, ids: list[int]) -> list[list[int]]:
        with self._session() as s:
            rows = s.execute(
                select(EnforcementAction.id, EnforcementAction.device_id).where(
                    EnforcementAction.id.in_(ids)
                )
            ).all()
        groups: dict[int, list[int]] = {}
        for action_id, device_id in rows:
            groups.setdefault(device_id, []).append(action_id)
        return list(groups.values())

    def _claim(self, s: Session, report: RunReport, start: Callable[[list[int]], None]) -> None:
        busy = set(
            s.scalars(
                select(EnforcementAction.device_id).where(
                    EnforcementAction.state == ActionState.EXECUTING
                )
            )
        )
        cuts = 0
        for action in queue.due(s, utcnow()):
            if action.device_id in busy:
                continue
            outcome = self._admit(s, action, report, cuts)
            s.commit()
            if outcome is None:
                continue
            target, commands = outcome
            if control.is_paused(s):  # the kill switch is read before every action
                report.paused = True
                break
            won = queue.claim(
                s, action.id, action.device_id, self.name, self.lease_s, target, commands
            )
            s.commit()
            if won:
                busy.add(action.device_id)
                start([action.id])
                cuts += action.kind == ActionKind.CUT

    def _admit(
        self, s: Session, action: EnforcementAction, report: RunReport, cuts: int
    ) -> tuple[Target, list[str]] | None:
        """Refuse, hold, or plan one approved action."""
        institution = s.get(Institution, action.link.institution_id)
        protected = bool(institution and institution.protected)
        refusal = rails.refusal(action, protected)
        if refusal is not None:
            report.refused[action.id] = refusal.reason
            if refusal.demote:
                queue.demote(s, action, refusal.reason)
            else:
                queue.refuse(s, action, refusal.reason, self.name)
            return None
        try:
            target, commands = queue.plan(s, action)
        except EnforcementError as exc:
            report.refused[action.id] = str(exc)
            queue.refuse(s, action, str(exc), self.name)
            return None
        hold = rails.breaker_hold(action, report.breaker_tripped) or rails.cap_hold(
            s, action, self.settings, cuts
        )
        if hold is not None:
            report.held[action.id] = hold
            queue.hold(s, action, hold)
            return None
        return target, commands

    def _parallel(
        self, groups: list[list[int]], job: Callable[[int], Outcome | None]
    ) -> list[Outcome]:
        """Run each group on its own thread, the group's actions one after another (a group
        is one device: one SSH session per device at a time)."""
        if not groups:
            return []
        workers = min(len(groups), self.max_parallel)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="enforce") as pool:
            results = list(pool.map(lambda ids: self._run_group(ids, job), groups))
        return [o for group in results for o in group]

    @staticmethod
    def _run_group(ids: list[int], job: Callable[[int], Outcome | None]) -> list[Outcome]:
        """One device's actions one after another (one SSH session per device at a time)."""
        done = []
        for action_id in ids:
            try:
                outcome = job(action_id)
            except Exception:
                # A bug or a lost database: the lease runs out and a later pass reconciles.
                log.exception("enforcement action %s: unexpected error", action_id)
                continue
            if outcome is not None:
                done.append(outcome)
        return done

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Pass after pass until ``stop_event`` (or :meth:`stop`) is set."""
        stop = stop_event or self.stop_event
        if stop is not self.stop_event:

            def relay() -> None:
                stop.wait()
                self.stop_event.set()

            threading.Thread(target=relay, daemon=True).start()
        log.info("enforcement worker %s started", self.name)
        while not self.stop_event.is_set():
            # A margin, so that an approval committed while the pass was reading is not missed.
            since = utcnow() - timedelta(seconds=self.settings.enforcement_poll_s)
            try:
                report = self.run_once()
            except Exception:
                log.exception("enforcement pass failed; trying again")
                report = RunReport()
            for outcome in report.reconciled + report.outcomes:
                log.info(
                    "action %s: %s (%s) in %.2f s",
                    outcome.action_id,
                    outcome.state,
                    outcome.detail,
                    outcome.seconds,
                )
            self._wait(since)
        log.info("enforcement worker %s stopped", self.name)

    def _wait(self, since: datetime) -> None:
        """Until the next full pass is due (``enforcement_poll_s``, which keeps reconciliation
        and the kill switch on time), or sooner if :meth:`new_work` finds something."""
        deadline = time.monotonic() + self.settings.enforcement_poll_s
        while not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stop_event.wait(min(self.wake_s, remaining)):
                return
            try:
                if self.new_work(since):
                    return
            except Exception:
                log.exception("enforcement wake-up query failed; waiting for the next pass")
                self.stop_event.wait(max(0.0, deadline - time.monotonic()))
                return

    def new_work(self, since: datetime) -> bool:
        """Whether an action was approved, or came due after a backoff, after ``since``
        (held actions, approved earlier, do not wake the loop again and again)."""
        now = utcnow()
        with self._session() as s:
            found = s.scalar(
                select(EnforcementAction.id)
                .where(
                    EnforcementAction.state == ActionState.APPROVED,
                    (EnforcementAction.approved_at > since)
                    | (
                        (EnforcementAction.next_attempt_at > since)
                        & (EnforcementAction.next_attempt_at <= now)
                    ),
                )
                .limit(1)
            )
        return found is not None

    def stop(self) -> None:
        self.stop_event.set()
