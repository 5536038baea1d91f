"""The webhook REST API: city administrators manage subscriptions, auditors read them, nobody
else does either; the secret is write-only and URL credentials are masked; the test ping
reaches a real receiver on loopback with a valid signature. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from core.crypto import secret_box
from core.inventory import import_file
from core.models import AuditEvent, Role, WebhookDelivery, WebhookSubscription
from core.tokens import create_token
from tests.api.test_webhooks import DING_SECRET, GENERIC_SECRET, Receiver

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def _headers(session: Session, role: Role, counties: list[str] | None = None) -> dict[str, str]:
    _, token = create_token(session, role=role, counties=counties or [])
    return {"Authorization": f"Bearer {token}"}


def test_crud_roles_and_write_only_secret(
    session: Session, db_url: str, receiver: Receiver
) -> None:
    import_file(session, SMALL, actor="test")
    admin = _headers(session, Role.CITY_ADMIN)
    auditor = _headers(session, Role.AUDITOR)
    viewer = _headers(session, Role.VIEWER)
    operator = _headers(session, Role.COUNTY_OPERATOR, ["140521"])
    session.commit()
    client = TestClient(create_app(db_url))
    body = {
        "name": "noc-robot",
        "url": receiver.url("/hook?key=robot-key-123"),
        "event_types": ["case.opened", "detection.created", "case.opened"],
        "secret": GENERIC_SECRET,
        "county_codes": ["140521"],
    }
    for who in (auditor, viewer, operator):
        assert client.post("/api/v1/webhooks", json=body, headers=who).status_code == 403
    for who in (viewer, operator):
        assert client.get("/api/v1/webhooks", headers=who).status_code == 403

    created = client.post("/api/v1/webhooks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["event_types"] == ["case.opened", "detection.created"]
    assert hook["has_secret"] is True and "secret" not in hook
    assert hook["url"].endswith("/hook?key=***")
    stored = session.get(WebhookSubscription, hook["id"])
    assert stored is not None and stored.secret_enc and GENERIC_SECRET not in stored.secret_enc
    assert secret_box().decrypt(stored.secret_enc) == GENERIC_SECRET
    assert stored.url == body["url"] and stored.created_by

    listed = client.get("/api/v1/webhooks", headers=auditor)
    assert listed.status_code == 200 and [h["id"] for h in listed.json()["items"]] == [hook["id"]]
    one = client.get(f"/api/v1/webhooks/{hook['id']}", headers=auditor)
    for answer in (created, listed, one):
        assert GENERIC_SECRET not in answer.text and "robot-key-123" not in answer.text
    assert client.get("/api/v1/webhooks/99999", headers=admin).status_code == 404

    # Refusals a person can act on.
    dup = client.post("/api/v1/webhooks", json=body, headers=admin)
    assert dup.status_code == 409 and "noc-robot" in dup.json()["detail"]
    nosecret = client.post(
        "/api/v1/webhooks", json={**body, "name": "x", "secret": None}, headers=admin
    )
    assert nosecret.status_code == 422 and "secret" in nosecret.json()["detail"]
    county = client.post(
        "/api/v1/webhooks", json={**body, "name": "y", "county_codes": ["999999"]}, headers=admin
    )
    assert county.status_code == 422 and "999999" in county.json()["detail"]
    badtype = client.post(
        "/api/v1/webhooks", json={**body, "name": "z", "event_types": ["nope"]}, headers=admin
    )
    assert badtype.status_code == 422
    badurl = client.post(
        "/api/v1/webhooks", json={**body, "name": "w", "url": "ftp://x/"}, headers=admin
    )
    assert badurl.status_code == 422

    # PATCH: format change to DingTalk with its own secret; auditors may not.
    assert (
        client.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=auditor)
    ).status_code == 403
    patched = client.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"format": "dingtalk", "secret": DING_SECRET, "county_codes": []},
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["format"] == "dingtalk" and patched.json()["county_codes"] == []
    session.expire_all()
    stored = session.get(WebhookSubscription, hook["id"])
    assert stored is not None and secret_box().decrypt(stored.secret_enc or "") == DING_SECRET
    back = client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"format": "generic", "secret": None}, headers=admin
    )
    assert back.status_code == 422  # generic without a secret
    audit_rows = session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("webhook.%")).order_by(AuditEvent.id)
    ).all()
    assert [a.action for a in audit_rows] == ["webhook.create", "webhook.update"]
    assert all(
        GENERIC_SECRET not in str(a.data) and "robot-key-123" not in str(a.data) for a in audit_rows
    )

    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=auditor).status_code == 403
    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=admin).status_code == 404


def test_ping_reaches_the_receiver_signed(
    session: Session, db_url: str, receiver: Receiver
) -> None:
    admin = _headers(session, Role.CITY_ADMIN)
    auditor = _headers(session, Role.AUDITOR)
    session.commit()
    client = TestClient(create_app(db_url))
    hook = client.post(
        "/api/v1/webhooks",
        json={
            "name": "ping-me",
            "url": receiver.url("/generic"),
            "event_types": ["case.opened"],
            "secret": GENERIC_SECRET,
        },
        headers=admin,
    ).json()
    assert client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auditor).status_code == 403
    r = client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["delivered"] is True and r.json()["status"] == 204
    assert r.json()["delivery"]["state"] == "delivered"
    [got] = receiver.requests
    assert got.signature_ok is True and got.headers["X-EdgeWarden-Event"] == "ping"
    assert got.json["type"] == "ping" and "ping-me" in got.json["summary_en"]

    receiver.fail = 1
    failed = client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=admin)
    assert failed.json()["delivered"] is False and failed.json()["status"] == 500
    dead = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?state=dead", headers=auditor)
    assert [d["event_type"] for d in dead.json()["items"]] == ["ping"]
    session.expire_all()
    assert session.scalars(select(WebhookDelivery.state).order_by(WebhookDelivery.id)).all() == [
        "delivered",
        "dead",
    ]
