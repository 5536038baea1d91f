"""When the jobs of :mod:`api.jobs` run: an APScheduler 3.11 ``BackgroundScheduler``.

Each job fires on an interval trigger aligned to the Unix epoch, so every instance fires at
the same slot boundaries, and once right at start (the current slot, if no instance ran it
yet). Every firing goes through :func:`api.jobs.run_locked`: several schedulers on one
PostgreSQL database each try, exactly one runs the slot. In-process, ``max_instances=1`` and
``coalesce=True`` keep a slow job from piling up runs; a run more than half an interval late
is skipped (the next slot comes soon enough). Jobs run on the scheduler's threads (blocking
SQL and SNMP sweeps never stall the API's event loop); :meth:`Scheduler.shutdown` stops
taking new slots and waits for running ones.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from api.jobs import JobSpec, default_jobs, run_locked
from core.db import session_factory
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def default_holder() -> str:
    """Names this instance in ``job_locks.holder``: host, pid and a random part, so two
    schedulers in one process (tests) or after a pid reuse are still told apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    """The scheduled jobs of one ``serve`` process."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        jobs: Sequence[JobSpec] | None = None,
        holder: str | None = None,
        run_at_start: bool = True,
    ) -> None:
        self.settings = settings or get_settings()
        self.database_url = database_url or self.settings.database_url
        self.jobs = list(jobs) if jobs is not None else default_jobs(self.settings)
        self.holder = holder or default_holder()
        self.run_at_start = run_at_start
        self._factory = session_factory(self.database_url)
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(4, len(self.jobs)))},
            timezone=UTC,
        )
        for spec in self.jobs:
            self._scheduler.add_job(
                self._fire,
                IntervalTrigger(seconds=spec.interval_s, start_date=_EPOCH, timezone=UTC),
                args=[spec],
                id=spec.name,
                name=spec.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(spec.interval_s / 2)),
                **({"next_run_time": datetime.now(UTC)} if run_at_start else {}),
            )

    def _fire(self, spec: JobSpec) -> str:
        try:
            return run_locked(self._factory, spec, (self.database_url, self.settings), self.holder)
        except Exception:  # the lock itself failed (database down): try again next slot
            log.exception("job %s: could not take its lock", spec.name)
            return "failed"

    def start(self) -> None:
        self._scheduler.start()
        log.info(
            "scheduler started",
            extra={"holder": self.holder, "jobs": {j.name: j.interval_s for j in self.jobs}},
        )

    def shutdown(self, wait: bool = True) -> None:
        """Stop firing; with ``wait``, return once running jobs have finished."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
            log.info("scheduler stopped", extra={"holder": self.holder})
