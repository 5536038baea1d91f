"""Enforcement actions and the kill switch over the real ASGI app, on SQLite and PostgreSQL:
who may read and decide (county scope in the query), approve/cancel/retry through the
enforcer's queue with their audit entries, a dry-run that renders the driver's commands
without touching the device, pause/resume seen by the worker's own check."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.app import create_app
from core.inventory import import_file
from core.models import (
    ActionKind,
    ActionMode,
    ActionState,
    AuditEvent,
    Device,
    EnforcementAction,
    Institution,
    Link,
    Role,
)
from core.tokens import create_token
from enforcer import control
from enforcer.drivers import get_driver
from enforcer.targets import resolve

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
OWN = "140521"  # the county operator's county (沁水县)
OTHER = "140525"  # another county (泽州县)


@dataclass
class World:
    client: TestClient
    session: Session
    tokens: dict[str, str]
    own: int  # a proposed cut in OWN
    other: int  # a proposed cut in OTHER

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def audit(self, action_id: int) -> list[tuple[str, str]]:
        self.session.expire_all()
        return [
            (e.action, e.actor)
            for e in self.session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.object_type == "enforcement_action",
                    AuditEvent.object_id == str(action_id),
                )
                .order_by(AuditEvent.id)
            )
        ]

    def state(self, action_id: int) -> ActionState:
        self.session.expire_all()
        action = self.session.get(EnforcementAction, action_id)
        assert action is not None
        return action.state


def link_in(session: Session, county: str) -> Link:
    """A leased-line link of an institution of ``county`` (H<county>00001's first)."""
    return session.scalars(
        select(Link)
        .join(Institution, Link.institution_id == Institution.id)
        .where(Institution.code == f"H{county}00001", Link.interface.is_not(None))
        .order_by(Link.id)
    ).first()  # type: ignore[return-value]


def propose(session: Session, link: Link, **kw: object) -> int:
    """A proposed cut, as the rules engine queues one (tests/enforcer/world.py does the same)."""
    action = EnforcementAction(
        link_id=link.id,
        device_id=link.device_id,
        kind=ActionKind.CUT,
        mode=ActionMode.APPROVE,
        state=ActionState.PROPOSED,
        reason="outbound_internet strike 1",
        requested_by="policy:jincheng",
        **kw,
    )
    session.add(action)
    session.commit()
    return action.id


@pytest.fixture
def world(session: Session, db_url: str) -> Iterator[World]:
    import_file(session, SMALL, actor="test")
    tokens = {}
    for role, counties, name in (
        (Role.CITY_ADMIN, [], "admin"),
        (Role.VIEWER, [], "viewer"),
        (Role.AUDITOR, [], "auditor"),
        (Role.COUNTY_OPERATOR, [OWN], "own_op"),
        (Role.COUNTY_OPERATOR, [OTHER], "other_op"),
    ):
        _, tokens[name] = create_token(session, role=role, counties=counties, name=name)
    session.commit()
    own = propose(session, link_in(session, OWN))
    other = propose(session, link_in(session, OTHER))
    with TestClient(create_app(db_url)) as client:
        yield World(client, session, tokens, own, other)


def test_list_and_detail_are_scoped_and_filtered(world: World) -> None:
    c = world.client
    every = c.get("/api/v1/actions", headers=world.h("viewer")).json()["items"]
    assert {a["id"] for a in every} == {world.own, world.other}
    mine = c.get("/api/v1/actions", headers=world.h("own_op")).json()["items"]
    assert [a["id"] for a in mine] == [world.own]
    assert mine[0]["institution"] == f"H{OWN}00001"
    # a filter that matches the other county's action still cannot reach it
    hidden = c.get(f"/api/v1/actions?institution=H{OTHER}00001", headers=world.h("own_op")).json()
    assert hidden["items"] == []
    assert c.get(f"/api/v1/actions/{world.other}", headers=world.h("own_op")).status_code == 404
    assert c.get(f"/api/v1/actions/{world.own}", headers=world.h("own_op")).status_code == 200
    # filters
    got = c.get("/api/v1/actions?state=proposed&kind=cut&mode=approve", headers=world.h("admin"))
    assert len(got.json()["items"]) == 2
    assert c.get("/api/v1/actions?state=verified", headers=world.h("admin")).json()["items"] == []
    device = every[0]["device"]
    by_dev = c.get(f"/api/v1/actions?device={device}", headers=world.h("admin")).json()["items"]
    assert {a["device"] for a in by_dev} == {device}
    assert c.get("/api/v1/actions?state=bogus", headers=world.h("admin")).status_code == 422
    # an id beyond PostgreSQL's INTEGER is bad input, not a server error
    assert c.get("/api/v1/actions/99999999999", headers=world.h("admin")).status_code == 422
    # pages
    first = c.get("/api/v1/actions?limit=1", headers=world.h("admin")).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = c.get(
        f"/api/v1/actions?limit=1&cursor={first['next_cursor']}", headers=world.h("admin")
    ).json()
    assert second["items"][0]["id"] != first["items"][0]["id"] and second["next_cursor"] is None


def test_backup_and_addresses_only_for_admin_and_auditor(world: World) -> None:
    world.session.execute(
        update(EnforcementAction)
        .where(EnforcementAction.id == world.own)
        .values(
            backup="interface Gi0/1.1001\n description secret-topology",
            transcript="R1#show run",
            verification="administratively down",
            target={"device": "x", "host": "127.0.0.1", "port": 22, "interface": "Gi0/1.1001"},
        )
    )
    world.session.commit()
    for role in ("admin", "auditor"):
        body = world.client.get(f"/api/v1/actions/{world.own}", headers=world.h(role)).json()
        assert body["backup"].startswith("interface Gi0/1.1001")
        assert body["target"]["host"] == "127.0.0.1"
        assert body["transcript"] == "R1#show run"
        assert body["verification"] == "administratively down"
    for role in ("viewer", "own_op"):
        r = world.client.get(f"/api/v1/actions/{world.own}", headers=world.h(role))
        body = r.json()
        assert body["backup"] is None and "secret-topology" not in r.text
        assert "host" not in body["target"] and body["target"]["interface"] == "Gi0/1.1001"
        assert body["transcript"] == "R1#show run"


def test_approve_roles_scope_and_audit(world: World) -> None:
    c = world.client
    body = {"reason": "confirmed by phone with the hospital"}
    for role in ("viewer", "auditor"):
        r = c.post(f"/api/v1/actions/{world.own}/approve", json=body, headers=world.h(role))
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    # another county's operator: 404, exactly as if the action did not exist
    r = c.post(f"/api/v1/actions/{world.own}/approve", json=body, headers=world.h("other_op"))
    assert r.status_code == 404
    r = c.post(f"/api/v1/actions/{world.own}/cancel", json=body, headers=world.h("other_op"))
    assert r.status_code == 404
    assert world.state(world.own) == ActionState.PROPOSED
    assert world.audit(world.own) == []
    # a reason is required
    assert (
        c.post(
            f"/api/v1/actions/{world.own}/approve", json={}, headers=world.h("own_op")
        ).status_code
        == 422
    )

    key = {"Idempotency-Key": "approve-own-1"}
    r = c.post(f"/api/v1/actions/{world.own}/approve", json=body, headers=world.h("own_op") | key)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved" and r.json()["approved_by"] == "own_op"
    assert world.state(world.own) == ActionState.APPROVED
    assert world.audit(world.own) == [("enforcement.approved", "own_op")]
    # a retry of the same request replays the answer and approves nothing twice
    again = c.post(
        f"/api/v1/actions/{world.own}/approve", json=body, headers=world.h("own_op") | key
    )
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert world.audit(world.own) == [("enforcement.approved", "own_op")]
    # without the key, a second approval is refused by the queue's state machine
    r = c.post(f"/api/v1/actions/{world.own}/approve", json=body, headers=world.h("own_op"))
    assert r.status_code == 409 and "not proposed" in r.json()["detail"]


def test_cancel_and_retry(world: World) -> None:
    c = world.client
    reason = {"reason": "the hospital removed the 4G router"}
    r = c.post(f"/api/v1/actions/{world.other}/cancel", json=reason, headers=world.h("other_op"))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert world.audit(world.other) == [("enforcement.cancelled", "other_op")]
    r = c.post(f"/api/v1/actions/{world.other}/cancel", json=reason, headers=world.h("admin"))
    assert r.status_code == 409

    # retry only a failed action
    r = c.post(f"/api/v1/actions/{world.own}/retry", headers=world.h("admin"))
    assert r.status_code == 409 and "not failed" in r.json()["detail"]
    world.session.execute(
        update(EnforcementAction)
        .where(EnforcementAction.id == world.own)
        .values(state=ActionState.FAILED, last_error="device unreachable", attempts=3)
    )
    world.session.commit()
    assert (
        c.post(f"/api/v1/actions/{world.own}/retry", headers=world.h("viewer")).status_code == 403
    )
    r = c.post(
        f"/api/v1/actions/{world.own}/retry",
        json={"reason": "line back"},
        headers=world.h("own_op"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved" and r.json()["attempts"] == 0
    assert world.audit(world.own)[-1] == ("enforcement.retried", "own_op")
    assert c.post("/api/v1/actions/999999/retry", headers=world.h("admin")).status_code == 404


def test_dry_run_renders_the_driver_commands_without_contacting_the_device(
    world: World,
) -> None:
    link = world.session.get(Link, world.session.get(EnforcementAction, world.own).link_id)  # type: ignore[union-attr]
    assert link is not None
    with socket.socket() as listener:  # the device's SSH port: nobody may connect during a dry-run
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        world.session.execute(
            update(Device)
            .where(Device.id == link.device_id)
            .values(mgmt_address="127.0.0.1", ssh_port=listener.getsockname()[1])
        )
        world.session.commit()
        r = world.client.get(f"/api/v1/actions/{world.own}/dry-run", headers=world.h("own_op"))
        assert r.status_code == 200, r.text
        with pytest.raises(BlockingIOError):
            listener.accept()
    body = r.json()
    device = world.session.get(Device, link.device_id)
    assert device is not None
    assert body["device"] == device.name and body["device_type"] == device.device_type
    action = world.session.get(EnforcementAction, world.own)
    assert action is not None
    expected = get_driver(device.device_type).render(ActionKind.CUT, resolve(world.session, action))
    assert body["commands"] == expected
    assert f"interface {link.interface}" in body["commands"] and "shutdown" in body["commands"]
    assert world.state(world.own) == ActionState.PROPOSED and world.audit(world.own) == []
    hidden = world.client.get(f"/api/v1/actions/{world.own}/dry-run", headers=world.h("other_op"))
    assert hidden.status_code == 404


def test_pause_resume_round_trip(world: World) -> None:
    c = world.client
    status = c.get("/api/v1/enforcement", headers=world.h("viewer")).json()
    assert status["paused"] is False and status["breaker_tripped"] is False
    assert status["counts"]["proposed"] == 2
    assert c.get("/api/v1/enforcement", headers=world.h("own_op")).json()["counts"]["proposed"] == 1
    why = {"reason": "carrier maintenance window"}
    for role in ("viewer", "auditor", "own_op"):
        r = c.post("/api/v1/enforcement/pause", json=why, headers=world.h(role))
        assert r.status_code == 403, role
    assert c.post("/api/v1/enforcement/pause", json={}, headers=world.h("admin")).status_code == 422
    r = c.post("/api/v1/enforcement/pause", json=why, headers=world.h("admin"))
    assert r.status_code == 200 and r.json()["paused"] is True
    world.session.expire_all()
    assert control.is_paused(world.session) is True
    status = c.get("/api/v1/enforcement", headers=world.h("auditor")).json()
    assert (status["paused"], status["paused_by"], status["reason"]) == (
        True,
        "admin",
        "carrier maintenance window",
    )
    r = c.post("/api/v1/enforcement/resume", json={"reason": "done"}, headers=world.h("admin"))
    assert r.status_code == 200 and r.json()["paused"] is False
    world.session.rollback()
    assert control.is_paused(world.session) is False
    assert c.get("/api/v1/enforcement", headers=world.h("admin")).json()["paused"] is False
    actions = [
        a
        for (a,) in world.session.execute(
            select(AuditEvent.action).where(AuditEvent.object_type == "enforcement_control")
        )
    ]
    assert actions == ["enforcement.paused", "enforcement.resumed"]


def test_reset_breaker_is_city_admin_only(world: World) -> None:
    control.trip_breaker(world.session, "40 detections in 10 minutes", {"n": 40})
    world.session.commit()
    c = world.client
    assert c.get("/api/v1/enforcement", headers=world.h("viewer")).json()["breaker_tripped"]
    why = {"reason": "spike was a mis-registered exporter, fixed"}
    assert (
        c.post("/api/v1/enforcement/reset-breaker", json=why, headers=world.h("own_op")).status_code
        == 403
    )
    r = c.post("/api/v1/enforcement/reset-breaker", json=why, headers=world.h("admin"))
    assert r.status_code == 200
    assert r.json()["breaker_tripped"] is False and r.json()["breaker_reason"] is None
