"""Webhook delivery to a real HTTP receiver on loopback (issue #7): signature, retry with
backoff, dead-letter and its retry, WeCom/DingTalk bodies and DingTalk's 加签, county filter,
no resend after a restart, several dispatchers at once. Events are real: produced by the rules
engine and the enforcer queue through the audit chain. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from api.webhooks import DispatchStats, dispatch_once, run_dispatcher
from core.inventory import import_file
from core.models import (
    Case,
    County,
    Detection,
    Document,
    EnforcementAction,
    EventCursor,
    Institution,
    Role,
    WebhookDelivery,
)
from core.settings import Settings
from core.timeutil import utcnow
from core.tokens import create_token
from enforcer import queue
from rules import engine

GENERIC_SECRET = "whsec-generic-0123456789"
DING_SECRET = "SEC0123456789abcdef-ding"


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    fail: int = 0  # the next N requests fail
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self, path: str | None = None) -> list[Any]:
        with self.lock:
            return [r.json for r in self.requests if path is None or r.path == path]

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parts = urllib.parse.urlsplit(self.path)
                path = parts.path
                if path.startswith("/slow"):
                    time.sleep(owner.delay)
                query = urllib.parse.parse_qs(parts.query)
                robot = path.endswith(("/wecom", "/dingtalk"))
                ok = _check(path, query, dict(self.headers), body)
                with owner.lock:
                    failing = owner.fail > 0
                    if failing:
                        owner.fail -= 1
                if robot:
                    status = 200
                    code = 93000 if failing else (0 if ok is not False else 310000)
                    answer = json.dumps({"errcode": code, "errmsg": "ok" if code == 0 else "no"})
                else:
                    status = 500 if failing else (204 if ok is not False else 401)
                    answer = ""
                with owner.lock:
                    owner.requests.append(
                        Received(path, query, dict(self.headers), body, ok, status)
                    )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.encode())))
                self.end_headers()
                self.wfile.write(answer.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _check(
    path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
) -> bool | None:
    """Independent signature checks: ours (generic) and DingTalk's 加签."""
    if path.endswith("/dingtalk"):
        if "sign" not in query:
            return None
        ts = query["timestamp"][0]
        mac = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256)
        fresh = abs(time.time() * 1000 - int(ts)) < 3600_000
        return fresh and hmac.compare_digest(
            query["sign"][0], base64.b64encode(mac.digest()).decode()
        )
    if path.endswith("/wecom"):
        return None
    sig = headers.get("X-EdgeWarden-Signature")
    if sig is None:
        return None
    ts = headers["X-EdgeWarden-Timestamp"]
    mac = hmac.new(GENERIC_SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(sig, "sha256=" + mac.hexdigest())


# --- fixtures and helpers --------------------------------------------------------------------

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
FAST = {"webhook_backoff_s": 1.0, "webhook_max_attempts": 3, "webhook_timeout_s": 2.0}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@dataclass
class World:
    url: str
    session: Session
    client: TestClient
    admin: dict[str, str]
    settings: Settings

    def subscribe(self, **body: Any) -> dict[str, Any]:
        body.setdefault("event_types", ["detection.created", "case.opened"])
        body.setdefault("format", "generic")
        if body["format"] == "generic":
            body.setdefault("secret", GENERIC_SECRET)
        r = self.client.post("/api/v1/webhooks", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def institution(self, county: str, index: int = 0) -> Institution:
        return self.session.scalars(
            select(Institution)
            .join(County)
            .where(County.code == county)
            .order_by(Institution.id)
            .offset(index)
        ).first()  # type: ignore[return-value]

    def detect(self, county: str, index: int = 0) -> Detection:
        inst = self.institution(county, index)
        det = engine.detect(
            self.session,
            "outbound_internet",
            inst,
            actor="test",
            evidence={"dst_addr": "203.0.113.9", "inst": inst.code},
            corroborated=True,
        )
        assert det is not None
        self.session.commit()
        return det

    def dispatch(self, now: datetime | None = None) -> DispatchStats:
        return asyncio.run(dispatch_once(self.url, self.settings, now=now))

    def deliveries(self) -> list[WebhookDelivery]:
        self.session.expire_all()
        return list(self.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


@pytest.fixture
def world(db_url: str, session: Session) -> World:
    import_file(session, SMALL, actor="test")
    _, token = create_token(session, role=Role.CITY_ADMIN)
    session.commit()
    client = TestClient(create_app(db_url))
    return World(db_url, session, client, {"Authorization": f"Bearer {token}"}, Settings(**FAST))


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- tests -----------------------------------------------------------------------------------


def test_generic_delivery_is_signed_and_not_resent_after_restart(
    world: World, receiver: Receiver
) -> None:
    sub = world.subscribe(name="noc", url=receiver.url("/generic"))
    before = _metric("edgewarden_webhook_deliveries_total", result="delivered")
    det = world.detect("140521")

    stats = world.dispatch()
    assert (stats.queued, stats.delivered, stats.dead) == (2, 2, 0)
    got = receiver.requests
    assert [r.signature_ok for r in got] == [True, True]
    assert [r.headers["X-EdgeWarden-Event"] for r in got] == ["detection.created", "case.opened"]
    first = got[0].json
    assert first["type"] == "detection.created"
    assert first["object"] == {"type": "detection", "id": str(det.id)}
    assert first["county_code"] == "140521"
    assert first["institution"]["code"] == world.institution("140521").code
    assert "违规外联" in first["summary_zh"] and "outbound_internet" in first["summary_en"]
    opened = got[1].json
    assert opened["object"]["id"] == str(det.case_id) and opened["data"]["strike"] == 1
    rows = world.deliveries()
    assert {d.state for d in rows} == {"delivered"}
    assert {got[i].headers["X-EdgeWarden-Delivery"] for i in range(2)} == {str(d.id) for d in rows}
    assert all(d.subscription_id == sub["id"] and d.attempts == 1 for d in rows)
    assert _metric("edgewarden_webhook_deliveries_total", result="delivered") == before + 2

    # A tampered body no longer matches the signature the receiver checks.
    ts = got[0].headers["X-EdgeWarden-Timestamp"]
    mac = hmac.new(GENERIC_SECRET.encode(), ts.encode() + b"." + got[0].body + b" ", "sha256")
    assert "sha256=" + mac.hexdigest() != got[0].headers["X-EdgeWarden-Signature"]

    # A restart is a new dispatcher: the cursor and the delivery states are in the database.
    again = world.dispatch(now=utcnow() + timedelta(days=1))
    assert (again.queued, again.delivered) == (0, 0)
    assert len(receiver.requests) == 2
    cursor = world.session.get(EventCursor, "webhooks")
    assert cursor is not None and cursor.last_id >= int(opened["id"])

    world.detect("140521", index=1)
    world.dispatch()
    assert len(receiver.requests) == 4  # only the new events


def test_retry_after_server_errors_then_success(world: World, receiver: Receiver) -> None:
    world.subscribe(name="flaky", url=receiver.url("/generic"), event_types=["case.opened"])
    receiver.fail = 2
    failures = _metric("edgewarden_webhook_failures_total", format="generic")
    world.detect("140522")
    t0 = utcnow()

    first = world.dispatch(now=t0)
    assert (first.queued, first.retried, first.delivered) == (1, 1, 0)
    [d] = world.deliveries()
    assert (d.state, d.attempts, d.last_status) == ("pending", 1, 500)
    wait = (d.next_attempt_at - t0).total_seconds()
    assert 0.8 <= wait <= 1.2  # webhook_backoff_s × 2^0 with ±20 % jitter

    assert world.dispatch(now=t0).retried == 0  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    assert world.dispatch(now=t0 + timedelta(seconds=2)).retried == 1
    [d] = world.deliveries()
    wait = (d.next_attempt_at - (t0 + timedelta(seconds=2))).total_seconds()
    assert 1.6 <= wait <= 2.4  # doubled
    done = world.dispatch(now=t0 + timedelta(seconds=10))
    assert done.delivered == 1
    [d] = world.deliveries()
    assert (d.state, d.attempts, d.last_status, d.last_error) == ("delivered", 3, 204, None)
    assert [r.status for r in receiver.requests] == [500, 500, 204]
    assert len({r.json["id"] for r in receiver.requests}) == 1  # the same event each time
    assert _metric("edgewarden_webhook_failures_total", format="generic") == failures + 2


def test_dead_after_max_attempts_and_retry_of_the_dead(world: World, receiver: Receiver) -> None:
    sub = world.subscribe(name="down", url=receiver.url("/generic"), event_types=["case.opened"])
    receiver.fail = 100
    world.detect("140521")
    t = utcnow()
    for step in range(3):
        world.dispatch(now=t + timedelta(minutes=step))
    [d] = world.deliveries()
    assert (d.state, d.attempts) == ("dead", 3)
    assert "HTTP 500" in (d.last_error or "")
    assert world.dispatch(now=t + timedelta(days=1)).retried == 0
    assert len(receiver.requests) == 3

    dead = world.client.get(
        f"/api/v1/webhooks/{sub['id']}/deliveries?state=dead", headers=world.admin
    )
    assert dead.status_code == 200 and [x["id"] for x in dead.json()["items"]] == [d.id]
    assert dead.json()["items"][0]["event_type"] == "case.opened"

    receiver.fail = 0
    r = world.client.post(f"/api/v1/webhooks/deliveries/{d.id}/retry", headers=world.admin)
    assert r.status_code == 200 and r.json()["state"] == "pending"
    assert world.dispatch().delivered == 1
    [d] = world.deliveries()
    assert d.state == "delivered" and receiver.requests[-1].signature_ok
    again = world.client.post(f"/api/v1/webhooks/deliveries/{d.id}/retry", headers=world.admin)
    assert again.status_code == 409 and "only dead" in again.json()["detail"]


def test_wecom_and_dingtalk_bodies_and_dingtalk_sign(world: World, receiver: Receiver) -> None:
    world.subscribe(
        name="wecom",
        url=receiver.url("/robot/wecom?key=abc"),
        format="wecom",
        event_types=["case.opened"],
    )
    world.subscribe(
        name="ding",
        url=receiver.url("/robot/dingtalk?access_token=tok"),
        format="dingtalk",
        secret=DING_SECRET,
        event_types=["case.opened"],
    )
    inst = world.institution("140581")
    world.detect("140581")
    receiver.fail = 1  # the first robot answer is HTTP 200 with errcode 93000: not delivered
    stats = world.dispatch()
    assert (stats.delivered, stats.retried) == (1, 1)
    world.dispatch(now=utcnow() + timedelta(minutes=5))
    assert {d.state for d in world.deliveries()} == {"delivered"}

    wecom = [r for r in receiver.requests if r.path == "/robot/wecom"]
    ding = [r for r in receiver.requests if r.path == "/robot/dingtalk"]
    assert len(wecom) + len(ding) == 3
    w = wecom[-1].json
    assert w["msgtype"] == "markdown" and set(w["markdown"]) == {"content"}
    assert inst.code in w["markdown"]["content"] and "立案" in w["markdown"]["content"]
    assert len(w["markdown"]["content"].encode()) <= 4096
    assert wecom[-1].query == {"key": ["abc"]}
    dg = ding[-1]
    assert dg.json["msgtype"] == "markdown"
    assert set(dg.json["markdown"]) == {"title", "text"}
    assert (
        "case.opened" in dg.json["markdown"]["title"] and inst.code in dg.json["markdown"]["text"]
    )
    assert dg.query["access_token"] == ["tok"] and dg.signature_ok is True
    assert "X-EdgeWarden-Signature" not in dg.headers


def test_county_filter(world: World, receiver: Receiver) -> None:
    world.subscribe(
        name="qinshui",
        url=receiver.url("/generic"),
        event_types=["detection.created"],
        county_codes=["140521"],
    )
    world.subscribe(name="all", url=receiver.url("/generic/all"), event_types=["detection.created"])
    world.detect("140521")
    world.detect("140522")
    world.dispatch()
    mine = receiver.bodies("/generic")
    assert [b["county_code"] for b in mine] == ["140521"]
    assert sorted(b["county_code"] for b in receiver.bodies("/generic/all")) == ["140521", "140522"]


def test_transition_action_and_deadline_events(world: World, receiver: Receiver) -> None:
    world.subscribe(
        name="all-events",
        url=receiver.url("/generic"),
        event_types=["case.transitioned", "action.verified", "action.failed", "deadline.overdue"],
    )
    det = world.detect("140524")
    s = world.session
    case = s.get(Case, det.case_id)
    assert case is not None
    actions = list(s.scalars(select(EnforcementAction).where(EnforcementAction.case_id == case.id)))
    assert len(actions) >= 1
    queue.fail(s, actions[0], "worker-1", "SSH refused")
    if len(actions) > 1:
        queue.verified(s, actions[1], "worker-1", "interface is shut down")
    s.add(
        Document(
            case_id=case.id,
            kind="written_explanation",
            filename="e.pdf",
            content_type="application/pdf",
            size=1,
            sha256="0" * 64,
            storage_path="/dev/null/e",
            uploaded_by="test",
        )
    )
    s.flush()
    engine.transition(s, case, "reconnect", _admin_actor(), reason="explanation filed")
    engine.check_deadlines(s, now=utcnow() + timedelta(days=3))
    s.commit()
    world.dispatch()
    types = [b["type"] for b in receiver.bodies()]
    assert "case.transitioned" in types and "action.failed" in types
    assert "deadline.overdue" in types
    assert ("action.verified" in types) == (len(actions) > 1)
    assert all(b["county_code"] == "140524" for b in receiver.bodies())
    assert all(r.signature_ok for r in receiver.requests)
    moved = next(b for b in receiver.bodies() if b["type"] == "case.transitioned")
    assert moved["audit_action"] == "case.reconnect" and moved["data"]["to"] == "reconnected"
    failed = next(b for b in receiver.bodies() if b["type"] == "action.failed")
    assert "SSH refused" in failed["summary_en"]


def _admin_actor() -> Any:
    from core.actors import Actor

    return Actor("city-noc", Role.CITY_ADMIN)


def test_slow_receiver_does_not_hold_up_others(world: World, receiver: Receiver) -> None:
    world.settings = Settings(**{**FAST, "webhook_timeout_s": 0.5})
    world.subscribe(name="slow", url=receiver.url("/slow"), event_types=["detection.created"])
    world.subscribe(name="fast", url=receiver.url("/generic"), event_types=["detection.created"])
    receiver.delay = 3.0
    for i in range(4):
        world.detect("140502", index=i)
    start = time.monotonic()
    stats = world.dispatch()
    took = time.monotonic() - start
    assert stats.delivered == 4 and stats.retried == 1 and stats.released == 3
    assert took < 2.5  # one timeout for the slow receiver, not four
    slow = [d for d in world.deliveries() if d.last_error == "timed out"]
    assert len(slow) == 1


def test_two_dispatchers_at_once_deliver_each_event_once(world: World, receiver: Receiver) -> None:
    world.subscribe(name="once", url=receiver.url("/generic"), event_types=["detection.created"])
    for i in range(6):
        world.detect("140525", index=i)

    async def both() -> list[DispatchStats]:
        return list(
            await asyncio.gather(
                dispatch_once(world.url, world.settings), dispatch_once(world.url, world.settings)
            )
        )

    stats = asyncio.run(both())
    stats.append(world.dispatch())  # whatever the leases held back
    ids = [b["id"] for b in receiver.bodies()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6
    assert sum(s.queued for s in stats) == 6
    assert {d.state for d in world.deliveries()} == {"delivered"}


def test_run_dispatcher_loop_delivers_and_stops(world: World, receiver: Receiver) -> None:
    world.subscribe(name="loop", url=receiver.url("/generic"), event_types=["case.opened"])
    settings = Settings(**{**FAST, "webhook_poll_s": 0.1})

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(run_dispatcher(world.url, stop, settings))
        await asyncio.to_thread(world.detect, "140521")
        for _ in range(100):
            if receiver.requests:
                break
            await asyncio.sleep(0.05)
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, timeout=5)
        return time.monotonic() - started

    stopped_in = asyncio.run(scenario())
    assert [b["type"] for b in receiver.bodies()] == ["case.opened"]
    assert stopped_in < 1.0
