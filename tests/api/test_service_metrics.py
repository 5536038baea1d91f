"""`/metrics`: Prometheus text, behind auth, with the gauges computed from the database at scrape
time and the process counters (NetFlow, scheduler) from the default registry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.orm import Session

import collector.netflow.pipeline  # noqa: F401 - registers the NetFlow counters, as `serve` does
from api.app import create_app
from api.jobs import JobSpec, run_locked
from core.db import session_factory
from core.inventory import import_file
from core.models import (
    ActionKind,
    ActionState,
    Case,
    Deadline,
    Detection,
    EnforcementAction,
    Link,
    ObservationSource,
    Role,
    Sweep,
    SweepStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from core.settings import load_settings
from core.timeutil import utcnow
from core.tokens import create_token

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _seed(session: Session) -> None:
    import_file(session, SMALL, actor="test")
    links = session.scalars(select(Link).order_by(Link.id).limit(3)).all()
    now = utcnow()
    cases = [
        Case(
            institution_id=link.institution_id,
            policy="jincheng",
            kind="outbound_internet",
            step="strike1",
            state=state,
            is_open=state != "closed",
        )
        for link, state in zip(
            links, ["awaiting_explanation", "awaiting_explanation", "closed"], strict=True
        )
    ]
    session.add_all(cases)
    for i, state in enumerate([ActionState.APPROVED, ActionState.APPROVED, ActionState.PROPOSED]):
        session.add(
            EnforcementAction(
                link_id=links[i].id,
                device_id=links[i].device_id,
                kind=ActionKind.CUT,
                state=state,
                requested_by="test",
            )
        )
    for i, kind in enumerate(["outbound_internet", "outbound_internet", "remote_control"]):
        session.add(
            Detection(
                key=f"k{i}",
                kind=kind,
                institution_id=links[0].institution_id,
                source=ObservationSource.NETFLOW,
            )
        )
    session.add(
        Sweep(
            status=SweepStatus.OK,
            started_at=now - timedelta(seconds=42),
            finished_at=now - timedelta(seconds=30),
        )
    )
    session.flush()
    session.add(Deadline(case_id=cases[0].id, kind="explanation", due_at=now - timedelta(hours=1)))
    sub = WebhookSubscription(name="noc", url="http://127.0.0.1:9/x", created_by="test")
    session.add(sub)
    session.flush()
    session.add_all(
        [
            WebhookDelivery(
                subscription_id=sub.id, event_id="e1", event_type="case.opened", state="dead"
            ),
            WebhookDelivery(
                subscription_id=sub.id,
                event_id="e2",
                event_type="case.opened",
                state="pending",
                attempts=2,
            ),
            WebhookDelivery(
                subscription_id=sub.id, event_id="e3", event_type="case.opened", state="delivered"
            ),
        ]
    )


def test_metrics_scrape(session: Session, db_url: str) -> None:
    _seed(session)
    _, viewer = create_token(session, role=Role.VIEWER)
    session.commit()

    def fails(_ctx: object) -> None:
        raise OSError("unreachable")

    settings = load_settings(database_url=db_url)
    run_locked(
        session_factory(db_url), JobSpec("metrics_probe", 60, fails), (db_url, settings), "t"
    )

    client = TestClient(create_app(db_url))
    assert client.get("/metrics").status_code == 401
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    got = _samples(resp.text)

    assert got[("edgewarden_metrics_database_up", ())] == 1
    assert got[("edgewarden_cases", (("state", "awaiting_explanation"),))] == 2
    assert got[("edgewarden_cases", (("state", "closed"),))] == 1
    assert got[("edgewarden_cases_open", ())] == 2
    assert got[("edgewarden_actions", (("state", "approved"),))] == 2
    assert got[("edgewarden_actions", (("state", "proposed"),))] == 1
    assert got[("edgewarden_action_queue_depth", ())] == 2
    assert got[("edgewarden_detections", (("kind", "outbound_internet"),))] == 2
    assert got[("edgewarden_detections", (("kind", "remote_control"),))] == 1
    assert got[("edgewarden_deadlines_overdue", ())] == 1
    assert got[("edgewarden_sweeps", (("status", "ok"),))] == 1
    assert abs(got[("edgewarden_sweep_last_duration_seconds", ())] - 12) < 0.01
    assert got[("edgewarden_webhook_deliveries", (("state", "dead"),))] == 1
    assert got[("edgewarden_webhook_failures", (("kind", "dead"),))] == 1
    assert got[("edgewarden_webhook_failures", (("kind", "retrying"),))] == 1
    assert got[("edgewarden_job_runs", (("job", "metrics_probe"),))] == 1
    assert got[("edgewarden_job_last_failed", (("job", "metrics_probe"),))] == 1
    # process counters from the default registry: scheduler and NetFlow collector
    assert got[("edgewarden_scheduler_job_failures_total", (("job", "metrics_probe"),))] >= 1
    names = {name for name, _ in got}
    assert "edgewarden_netflow_observations_total" in names
    assert "edgewarden_scheduler_job_seconds_count" in names
    # nothing secret in the page (device communities and passwords of the sample)
    assert "pw-jc-" not in resp.text and "community" not in resp.text
