"""The job lock: exactly one scheduler instance runs each job per slot (issue #7), on SQLite and
PostgreSQL; failures are recorded and never stop the scheduler."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from api.jobs import JobContext, JobSpec, job_status, run_locked, slot_for, try_acquire
from api.scheduler import Scheduler
from core.db import session_factory
from core.models import JobLock
from core.settings import load_settings


def test_slot_is_interval_aligned() -> None:
    when = datetime(2026, 3, 1, 12, 7, 31, 250_000, tzinfo=UTC)
    assert slot_for(when, 300) == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert slot_for(when, 1) == datetime(2026, 3, 1, 12, 7, 31, tzinfo=UTC)
    assert slot_for(when, 86400) == datetime(2026, 3, 1, tzinfo=UTC)
    # the same slot for every instant inside it, the next one at the boundary
    assert slot_for(when + timedelta(seconds=148), 300) == slot_for(when, 300)
    assert slot_for(datetime(2026, 3, 1, 12, 10, tzinfo=UTC), 300) > slot_for(when, 300)


def test_one_winner_per_slot_and_lease(db_url: str) -> None:
    factory = session_factory(db_url)
    now = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    slot = slot_for(now, 60)
    lease = timedelta(seconds=60)
    assert try_acquire(factory, "j", slot, "a", lease, now)  # row inserted, then taken
    assert not try_acquire(factory, "j", slot, "b", lease, now)  # same slot: refused
    # a newer slot while the lease is held (a run still going): refused
    nxt = slot + timedelta(seconds=60)
    assert not try_acquire(factory, "j", nxt, "b", lease, nxt)
    # after the lease ran out (a crashed holder), the newer slot is taken
    late = now + timedelta(seconds=61)
    assert try_acquire(factory, "j", nxt, "b", lease, late)
    # an older slot is never run again
    assert not try_acquire(factory, "j", slot, "c", lease, late + timedelta(hours=1))
    with factory() as s:
        row = s.get(JobLock, "j")
        assert row is not None and row.holder == "b" and row.runs == 2
        assert row.last_slot == nxt


def _value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_failure_is_recorded_and_counted(db_url: str) -> None:
    factory = session_factory(db_url)
    settings = load_settings(database_url=db_url)
    calls: list[datetime] = []

    def boom(ctx: JobContext) -> None:
        calls.append(ctx.slot)
        if len(calls) == 1:
            raise ValueError("device table unreadable")

    spec = JobSpec("flaky", 60, boom)
    before = _value("edgewarden_scheduler_job_failures_total", {"job": "flaky"})
    t0 = datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC)
    assert run_locked(factory, spec, (db_url, settings), "me", t0) == "failed"
    assert _value("edgewarden_scheduler_job_failures_total", {"job": "flaky"}) == before + 1
    with factory() as s:
        (status,) = [j for j in job_status(s) if j["name"] == "flaky"]
    assert status["last_status"] == "failed"
    assert "ValueError: device table unreadable" in status["last_error"]
    assert status["locked_until"] is None  # released: the next slot may run at once
    # the next slot runs normally and clears the error
    t1 = t0 + timedelta(seconds=60)
    assert run_locked(factory, spec, (db_url, settings), "me", t1) == "ok"
    assert run_locked(factory, spec, (db_url, settings), "other", t1) == "skipped"
    with factory() as s:
        (status,) = [j for j in job_status(s) if j["name"] == "flaky"]
    assert status["last_status"] == "ok" and status["last_error"] is None
    assert status["runs"] == 2 and status["last_slot"] == slot_for(t1, 60).isoformat()
    assert calls == [slot_for(t0, 60), slot_for(t1, 60)]


def test_two_schedulers_run_each_slot_once(db_url: str, session: Session) -> None:
    """Two scheduler instances (each its own APScheduler, thread pool and holder name) share
    one database and fire the same 1-second job at the same instants."""
    settings = load_settings(database_url=db_url)
    runs: list[tuple[datetime, str]] = []
    lock = threading.Lock()

    def record(ctx: JobContext) -> None:
        who = threading.current_thread().name
        with lock:
            runs.append((ctx.slot, who))
        time.sleep(0.2)  # hold the lease across the other instance's attempt

    spec = JobSpec("record", 1, record, lease_s=0.9)
    instances = [
        Scheduler(db_url, settings=settings, jobs=[spec], holder=f"inst-{i}") for i in (1, 2)
    ]
    for inst in instances:
        inst.start()
    try:
        time.sleep(4.5)
    finally:
        for inst in instances:
            inst.shutdown(wait=True)
    per_slot = Counter(slot for slot, _ in runs)
    assert len(per_slot) >= 4, runs  # at start, then every second
    assert max(per_slot.values()) == 1, per_slot  # never twice in one slot
    slots = sorted(per_slot)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(slots)), slots
    (status,) = [j for j in job_status(session) if j["name"] == "record"]
    assert status["runs"] == len(runs)
    assert status["holder"] in {"inst-1", "inst-2"} and status["last_status"] == "ok"


def test_job_failure_does_not_stop_scheduler(db_url_sqlite: str) -> None:
    settings = load_settings(database_url=db_url_sqlite)
    seen: list[datetime] = []

    def always_fails(ctx: JobContext) -> None:
        seen.append(ctx.slot)
        raise RuntimeError("nope")

    sched = Scheduler(db_url_sqlite, settings=settings, jobs=[JobSpec("bad", 1, always_fails)])
    sched.start()
    try:
        time.sleep(2.5)
    finally:
        sched.shutdown(wait=True)
    assert len(set(seen)) >= 2  # kept firing after the first failure


@pytest.mark.parametrize("interval", [7, 60, 900])
def test_slots_from_scheduler_boundaries(interval: int) -> None:
    """APScheduler fires on epoch-aligned boundaries, which are slot starts."""
    from apscheduler.triggers.interval import IntervalTrigger

    trig = IntervalTrigger(
        seconds=interval, start_date=datetime(1970, 1, 1, tzinfo=UTC), timezone=UTC
    )
    now = datetime.now(UTC)
    fire = trig.get_next_fire_time(None, now)
    assert fire is not None and slot_for(fire, interval) == fire
