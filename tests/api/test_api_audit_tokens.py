"""Audit log and API tokens over the real ASGI app, on SQLite and PostgreSQL: a token created
through the API works, is listed without its hash and stops working once revoked; the audit
query filters and is closed to county operators and viewers; the chain verifies, and an
entry edited behind the service's back (plain SQL UPDATE) is named."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from api.app import create_app
from core.inventory import import_file
from core.models import ApiToken, AuditEvent, Role
from core.timeutil import utcnow
from core.tokens import create_token

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
OWN = "140521"


@dataclass
class World:
    client: TestClient
    session: Session
    tokens: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.get(who, who)}"}


@pytest.fixture
def world(session: Session, db_url: str) -> Iterator[World]:
    import_file(session, SMALL, actor="test")
    tokens = {}
    for role, counties, name in (
        (Role.CITY_ADMIN, [], "admin"),
        (Role.VIEWER, [], "viewer"),
        (Role.AUDITOR, [], "auditor"),
        (Role.COUNTY_OPERATOR, [OWN], "own_op"),
    ):
        _, tokens[name] = create_token(session, role=role, counties=counties, name=name)
    session.commit()
    with TestClient(create_app(db_url)) as client:
        yield World(client, session, tokens)


def test_token_create_use_revoke(world: World) -> None:
    c = world.client
    new = {"name": "county-bot", "role": "county_operator", "counties": [OWN], "expires_days": 30}
    for who in ("viewer", "auditor", "own_op"):
        assert c.post("/api/v1/tokens", json=new, headers=world.h(who)).status_code == 403
        assert c.get("/api/v1/tokens", headers=world.h(who)).status_code == 403
    r = c.post("/api/v1/tokens", json=new, headers=world.h("admin"))
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    assert token.startswith("ew_") and created["prefix"] == token[:11]
    assert (created["user"], created["role"], created["counties"]) == (
        "county-bot",
        "county_operator",
        [OWN],
    )
    assert r.headers["cache-control"] == "no-store"
    expires = world.session.scalar(select(ApiToken.expires_at).where(ApiToken.id == created["id"]))
    assert expires is not None
    assert timedelta(days=29) < expires.replace(tzinfo=None) - utcnow().replace(tzinfo=None)

    # the new token works, with its county scope
    mine = c.get("/api/v1/institutions?limit=500", headers=world.h(token))
    assert mine.status_code == 200
    assert {i["county"]["code"] for i in mine.json()["items"]} == {OWN}

    # listed (with last use), never with the token or its hash
    listed = c.get("/api/v1/tokens?user=county-bot", headers=world.h("admin"))
    (row,) = listed.json()["items"]
    assert row["id"] == created["id"] and row["last_used_at"] is not None
    assert "token" not in row and "token_hash" not in row
    stored_hash = world.session.scalar(
        select(ApiToken.token_hash).where(ApiToken.id == created["id"])
    )
    assert stored_hash and stored_hash not in listed.text and token not in listed.text

    # revoke: audited, and the token answers 401 from then on
    assert c.delete(f"/api/v1/tokens/{created['id']}", headers=world.h("viewer")).status_code == 403
    r = c.delete(f"/api/v1/tokens/{created['id']}", headers=world.h("admin"))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert c.get("/api/v1/institutions", headers=world.h(token)).status_code == 401
    assert c.delete(f"/api/v1/tokens/{created['id']}", headers=world.h("admin")).status_code == 200
    assert c.delete("/api/v1/tokens/999999", headers=world.h("admin")).status_code == 404
    world.session.expire_all()
    revokes = world.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "token.revoke")
    ).all()
    assert [(e.actor, e.data["api_key_id"]) for e in revokes] == [("admin", created["id"])]
    creates = world.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "token.create", AuditEvent.actor == "admin")
    ).all()
    assert len(creates) == 1 and token not in str(creates[0].data)
    assert (
        c.get("/api/v1/tokens?active=false", headers=world.h("admin")).json()["items"][0]["id"]
        == created["id"]
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"role": "county_operator", "counties": []}, "at least one"),
        ({"role": "county_operator", "counties": ["999999"]}, "999999"),
        ({"role": "county_operator", "counties": ["12"]}, "counties"),
        ({"role": "auditor", "counties": [OWN]}, "city-wide"),
        ({"role": "emperor"}, "role"),
        ({"role": "viewer", "expires_days": 0}, "expires_days"),
    ],
)
def test_token_create_refuses_bad_input(world: World, body: dict[str, object], needle: str) -> None:
    before = world.session.scalar(select(ApiToken.id).order_by(ApiToken.id.desc()))
    r = world.client.post("/api/v1/tokens", json=body, headers=world.h("admin"))
    assert r.status_code == 422, r.text
    assert needle in r.text
    world.session.expire_all()
    assert world.session.scalar(select(ApiToken.id).order_by(ApiToken.id.desc())) == before


def test_audit_query_roles_and_filters(world: World) -> None:
    c = world.client
    r = c.get("/api/v1/audit", headers=world.h("own_op"))
    assert r.status_code == 403 and "not split by county" in r.json()["detail"]
    assert c.get("/api/v1/audit", headers=world.h("viewer")).status_code == 403
    assert c.get("/api/v1/audit/verify", headers=world.h("own_op")).status_code == 403

    every = c.get("/api/v1/audit?limit=500", headers=world.h("auditor")).json()["items"]
    ids = [e["id"] for e in every]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 5
    creates = c.get("/api/v1/audit?action=token.create", headers=world.h("admin")).json()["items"]
    assert len(creates) == 4 and {e["action"] for e in creates} == {"token.create"}
    by_actor = c.get("/api/v1/audit?actor=test&limit=500", headers=world.h("admin")).json()
    assert by_actor["items"] and {e["actor"] for e in by_actor["items"]} == {"test"}
    one = creates[0]
    got = c.get(
        f"/api/v1/audit?object_type={one['object_type']}&object_id={one['object_id']}",
        headers=world.h("admin"),
    ).json()["items"]
    assert [e["id"] for e in got] == [one["id"]]
    first_at = every[-1]["at"]
    since = c.get("/api/v1/audit", params={"since": first_at}, headers=world.h("admin")).json()
    assert every[-1]["id"] in {e["id"] for e in since["items"]}
    until = c.get(
        "/api/v1/audit", params={"until": first_at, "limit": 500}, headers=world.h("admin")
    ).json()
    assert every[-1]["id"] not in {e["id"] for e in until["items"]}
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert (
        c.get("/api/v1/audit", params={"since": future}, headers=world.h("admin")).json()["items"]
        == []
    )
    bad = c.get(
        "/api/v1/audit", params={"since": future, "until": first_at}, headers=world.h("admin")
    )
    assert bad.status_code == 422


def test_audit_verify_then_tamper(world: World) -> None:
    c = world.client
    r = c.get("/api/v1/audit/verify", headers=world.h("auditor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and body["first_bad_id"] is None and body["checked"] >= 5
    victim = world.session.scalar(
        select(AuditEvent.id).where(AuditEvent.action == "token.create").order_by(AuditEvent.id)
    )
    world.session.execute(
        text("UPDATE audit_events SET reason = :r WHERE id = :id"),
        {"r": "nothing happened here", "id": victim},
    )
    world.session.commit()
    body = c.get("/api/v1/audit/verify", headers=world.h("admin")).json()
    assert body["ok"] is False and body["first_bad_id"] == victim
    assert "altered" in body["problem"]
