"""The built-in job bodies run through the lock against a real database: deadline checks alert
overdue deadlines, retention cleanup runs, the SNMP sweep records a sweep."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.jobs import default_jobs, job_status, run_locked
from core.db import session_factory
from core.inventory import import_file
from core.models import Case, Deadline, Institution, Sweep
from core.settings import load_settings
from core.timeutil import utcnow

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"


def test_builtin_jobs_run(session: Session, db_url: str) -> None:
    import_file(session, SMALL, actor="test")
    inst = session.scalars(select(Institution).order_by(Institution.id)).first()
    assert inst is not None
    case = Case(
        institution_id=inst.id,
        policy="jincheng",
        kind="outbound_internet",
        step="strike1",
        state="awaiting_explanation",
    )
    session.add(case)
    session.flush()
    overdue = Deadline(case_id=case.id, kind="explanation", due_at=utcnow() - timedelta(hours=2))
    session.add(overdue)
    session.commit()

    settings = load_settings(database_url=db_url, sweep_interval_s=60)
    jobs = {j.name: j for j in default_jobs(settings)}
    assert set(jobs) == {"snmp_sweep", "deadline_check", "retention_cleanup"}
    factory = session_factory(db_url)
    ctx = (db_url, settings)
    assert run_locked(factory, jobs["deadline_check"], ctx, "t") == "ok"
    assert run_locked(factory, jobs["retention_cleanup"], ctx, "t") == "ok"
    # no device answers SNMP here: the sweep still completes and is recorded
    sweep_settings = load_settings(
        database_url=db_url, snmp_timeout_s=0.2, snmp_retries=0, snmp_device_deadline_s=2
    )
    assert run_locked(factory, jobs["snmp_sweep"], (db_url, sweep_settings), "t") == "ok"

    session.expire_all()
    assert session.get(Deadline, overdue.id).alerted_at is not None  # type: ignore[union-attr]
    sweep = session.scalars(select(Sweep).order_by(Sweep.id.desc())).first()
    assert sweep is not None and sweep.trigger == "scheduler"
    assert sweep.requested_by == "scheduler" and sweep.finished_at is not None
    status = {j["name"]: j for j in job_status(session)}
    assert all(status[n]["last_status"] == "ok" for n in jobs), status
