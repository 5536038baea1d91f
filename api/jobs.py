"""The scheduled jobs and the database lock that lets exactly one scheduler run each slot.

A *slot* is the interval-aligned start time of a run (``floor(now / interval) * interval``
in UTC), so every scheduler instance computes the same slot for the same run. Before running,
an instance takes the job's row in ``job_locks`` with ONE conditional UPDATE (free lease and an
older ``last_slot``); its rowcount decides. PostgreSQL re-checks the WHERE clause against the
row committed by a concurrent winner, and SQLite serialises writers, so two instances can
never both win a slot. :func:`job_status` shows the rows (REST and metrics read it).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.models import JobLock
from core.settings import Settings
from core.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class JobContext:
    """What a job body gets: where the database is, the settings, and the slot it runs for."""

    database_url: str
    settings: Settings
    slot: datetime


JobBody = Callable[[JobContext], Any]


@dataclass(frozen=True)
class JobSpec:
    """A job: its name (the ``job_locks`` key), interval, body and lease.

    The lease outlives a crashed holder: until ``locked_until`` nobody else takes the job, so
    it should exceed the job's longest honest run."""

    name: str
    interval_s: float
    body: JobBody
    lease_s: float | None = None

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_s or max(self.interval_s, 60.0))


def slot_for(when: datetime, interval_s: float) -> datetime:
    """The interval-aligned start of the slot that ``when`` falls in (UTC, whole microseconds
    so that the stored value compares equal on SQLite and PostgreSQL)."""
    step = int(interval_s * 1_000_000)
    since = as_utc(when) - _EPOCH
    micros = (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds
    return _EPOCH + timedelta(microseconds=micros - micros % step)


# --- the lock -------------------------------------------------------------------------------


def _ensure_row(session: Session, name: str) -> None:
    """Insert the job's row if missing; a concurrent insert by another instance is fine."""
    if session.get(JobLock, name) is not None:
        return
    session.add(JobLock(name=name, runs=0))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another scheduler inserted it first: the row is there, all we need


def try_acquire(
    factory: sessionmaker[Session],
    name: str,
    slot: datetime,
    holder: str,
    lease: timedelta,
    now: datetime | None = None,
) -> bool:
    """Take ``name`` for ``slot``; True for exactly one caller per slot."""
    now = now or utcnow()
    with factory() as session:
        _ensure_row(session, name)
        result = session.execute(
            update(JobLock)
            .where(
                JobLock.name == name,
                or_(JobLock.locked_until.is_(None), JobLock.locked_until < now),
                or_(JobLock.last_slot.is_(None), JobLock.last_slot < slot),
            )
            .values(
                holder=holder,
                locked_until=now + lease,
                last_slot=slot,
                last_started_at=now,
                last_status="running",
                runs=JobLock.runs + 1,
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)


def release(
    factory: sessionmaker[Session],
    name: str,
    slot: datetime,
    holder: str,
    *,
    error: str | None = None,
) -> None:
    """Record the outcome and free the lease (only if we still hold this slot)."""
    with factory() as session:
        session.execute(
            update(JobLock)
            .where(JobLock.name == name, JobLock.holder == holder, JobLock.last_slot == slot)
            .values(
                locked_until=None,
                last_finished_at=utcnow(),
                last_status="failed" if error else "ok",
                last_error=error[-MAX_ERROR_CHARS:] if error else None,
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()


def run_locked(
    factory: sessionmaker[Session],
    spec: JobSpec,
    ctx_base: tuple[str, Settings],
    holder: str,
    now: datetime | None = None,
) -> str:
    """Run one slot of ``spec`` if this instance wins it.

    Returns ``"skipped"`` (another instance has or had the slot), ``"ok"`` or ``"failed"``.
    Failures are logged and stored in ``last_error``; they never propagate (the scheduler
    must keep running)."""
    from api import metrics

    now = now or utcnow()
    slot = slot_for(now, spec.interval_s)
    if not try_acquire(factory, spec.name, slot, holder, spec.lease, now):
        log.debug("job %s slot %s: taken by another instance", spec.name, slot.isoformat())
        return "skipped"
    database_url, settings = ctx_base
    log.info("job %s started", spec.name, extra={"job": spec.name, "slot": slot.isoformat()})
    error: str | None = None
    with metrics.JOB_SECONDS.labels(spec.name).time():
        try:
            spec.body(JobContext(database_url, settings, slot))
        except Exception as exc:
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.exception("job %s failed", spec.name, extra={"job": spec.name})
            metrics.JOB_FAILURES.labels(spec.name).inc()
    metrics.JOB_RUNS.labels(spec.name, "failed" if error else "ok").inc()
    try:
        release(factory, spec.name, slot, holder, error=error)
    except Exception:
        log.exception("job %s: could not record its outcome", spec.name)
    if error is None:
        log.info("job %s finished", spec.name, extra={"job": spec.name})
    return "failed" if error else "ok"


# --- the jobs -------------------------------------------------------------------------------


def snmp_sweep(ctx: JobContext) -> None:
    """One SNMP sweep of every enabled device (the same as ``edgewarden sweep``)."""
    from collector.snmp.sweep import run_sweep

    result = asyncio.run(
        run_sweep(
            ctx.database_url,
            trigger="scheduler",
            requested_by="scheduler",
            settings=ctx.settings,
        )
    )
    log.info(
        "scheduled SNMP sweep done",
        extra={
            "sweep": result.sweep_id,
            "status": str(result.status),
            "failed": len(result.failed),
        },
    )


def deadline_check(ctx: JobContext) -> None:
    """Mark met deadlines and alert overdue ones, in one transaction."""
    from core.db import session_scope
    from rules.engine import check_deadlines

    with session_scope(ctx.database_url) as session:
        alerted = check_deadlines(session)
    if alerted:
        log.warning("deadlines overdue", extra={"deadlines": [d.id for d in alerted]})


def retention_cleanup(ctx: JobContext) -> None:
    """Delete what is older than the retention period (audit, evidence and logs are kept at
    least six months: ``retention_days`` ≥ 183)."""
    from core.db import session_scope

    try:
        from core.retention import cleanup  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError as exc:
        raise RuntimeError("core.retention is not installed: nothing was cleaned up") from exc
    with session_scope(ctx.database_url) as session:
        removed = cleanup(session, settings=ctx.settings)
    log.info("retention cleanup done", extra={"removed": removed})


def default_jobs(settings: Settings) -> list[JobSpec]:
    """The jobs ``serve`` schedules.

    Probe sweeps (issue #8) go here as ``JobSpec("probe_sweep", settings.probe_interval_s,
    probe_sweep)`` once the probe package has a sweep entry point."""
    return [
        JobSpec(
            "snmp_sweep",
            settings.sweep_interval_s,
            snmp_sweep,
            lease_s=max(settings.sweep_interval_s, 2 * settings.snmp_device_deadline_s + 60),
        ),
        JobSpec("deadline_check", settings.deadline_check_interval_s, deadline_check),
        JobSpec(
            "retention_cleanup",
            settings.retention_interval_s,
            retention_cleanup,
            lease_s=max(settings.retention_interval_s / 2, 3600),
        ),
    ]


# --- status ---------------------------------------------------------------------------------


def job_status(session: Session) -> list[dict[str, Any]]:
    """Every job's row, by name: holder, lease, last slot, last outcome and error, runs."""
    rows = session.scalars(select(JobLock).order_by(JobLock.name)).all()

    def iso(value: datetime | None) -> str | None:
        return None if value is None else as_utc(value).isoformat()

    return [
        {
            "name": r.name,
            "holder": r.holder,
            "locked_until": iso(r.locked_until),
            "last_slot": iso(r.last_slot),
            "last_started_at": iso(r.last_started_at),
            "last_finished_at": iso(r.last_finished_at),
            "last_status": r.last_status,
            "last_error": r.last_error,
            "runs": r.runs,
        }
        for r in rows
    ]
