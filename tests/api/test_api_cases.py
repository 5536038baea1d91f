"""Cases over the API: lists and detail scoped to the caller's counties, the Jincheng art. 14
transitions through rules.engine (refused without the document, applied with it), idempotent
replays, role checks, the remediation text and the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.app import create_app
from core.inventory import import_file
from core.models import (
    AuditEvent,
    Case,
    CaseEvent,
    Document,
    EnforcementAction,
    Institution,
    Role,
)
from core.tokens import create_token
from rules import engine

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
STRIKER = "P14052100002"  # Qinshui (140521), not protected: three-strike story
LINK_DOWN = "H14052100001"  # Qinshui, protected
OTHER = "H14050200003"  # Chengqu (140502)


class World:
    def __init__(self, session: Session, client: TestClient, tokens: dict[str, str]) -> None:
        self.session = session
        self.client = client
        self.tokens = tokens

    def headers(self, who: str, key: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.tokens[who]}"}
        if key:
            h["Idempotency-Key"] = key
        return h

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.client.get("/api/v1" + path, params=params, headers=self.headers(who))

    def post(self, who: str, path: str, body: Any, key: str | None = None) -> Any:
        return self.client.post("/api/v1" + path, json=body, headers=self.headers(who, key))

    def patch(self, who: str, path: str, body: Any) -> Any:
        return self.client.patch("/api/v1" + path, json=body, headers=self.headers(who))

    def items(self, who: str, path: str, **params: Any) -> list[dict[str, Any]]:
        r = self.get(who, path, limit=500, **params)
        assert r.status_code == 200, r.text
        assert r.json()["next_cursor"] is None
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def institution(self, code: str) -> Institution:
        inst = self.session.scalar(select(Institution).where(Institution.code == code))
        assert inst is not None
        return inst

    def find(self, code: str, kind: str, at: datetime) -> int:
        det = engine.detect(
            self.session,
            kind,
            self.institution(code),
            actor="test-collector",
            evidence={"note": f"{kind} seen"},
            at=at,
        )
        assert det is not None and det.case_id is not None
        self.session.commit()
        return det.case_id

    def document(self, case_id: int, kind: str) -> int:
        doc = Document(
            case_id=case_id,
            kind=kind,
            filename=f"{kind}.pdf",
            content_type="application/pdf",
            size=1234,
            sha256="ab" * 32,
            storage_path=f"ab/{kind}",
            uploaded_by="county-140521",
            uploaded_at=T0 + timedelta(hours=5),
        )
        self.session.add(doc)
        self.session.commit()
        return doc.id

    def count(self, stmt: Any) -> int:
        self.session.expire_all()
        n = int(self.session.scalar(stmt) or 0)
        self.session.rollback()
        return n


@pytest.fixture
def world(session: Session, db_url: str) -> World:
    import_file(session, SMALL, actor="test")
    tokens = {}
    for who, role, counties in [
        ("admin", Role.CITY_ADMIN, []),
        ("viewer", Role.VIEWER, []),
        ("auditor", Role.AUDITOR, []),
        ("county", Role.COUNTY_OPERATOR, ["140521"]),
        ("chengqu", Role.COUNTY_OPERATOR, ["140502"]),
    ]:
        _, tokens[who] = create_token(session, role=role, counties=counties)
    session.commit()
    return World(session, TestClient(create_app(db_url)), tokens)


def test_case_lists_filters_and_scope(world: World) -> None:
    strike = world.find(STRIKER, "outbound_internet", T0)
    down = world.find(LINK_DOWN, "link_down", T0 + timedelta(hours=1))
    other = world.find(OTHER, "remote_control", T0 + timedelta(hours=2))

    every = world.items("admin", "/cases")
    assert [c["id"] for c in every] == [other, down, strike]  # newest first
    assert {c["id"] for c in world.items("county", "/cases")} == {strike, down}
    assert [c["id"] for c in world.items("chengqu", "/cases")] == [other]
    assert [c["id"] for c in world.items("admin", "/cases", county="140502")] == [other]
    assert world.items("county", "/cases", county="140502") == []
    assert [c["id"] for c in world.items("admin", "/cases", state="awaiting_fault_report")] == [
        down
    ]
    assert [c["id"] for c in world.items("admin", "/cases", kind="remote_control")] == [other]
    assert [c["id"] for c in world.items("admin", "/cases", institution=STRIKER)] == [strike]
    assert [c["id"] for c in world.items("admin", "/cases", strike=1)] == [strike]
    assert len(world.items("admin", "/cases", is_open=True)) == 3
    assert world.items("admin", "/cases", is_open=False) == []
    first = world.get("admin", "/cases", limit=1).json()
    second = world.get("admin", "/cases", limit=1, cursor=first["next_cursor"]).json()
    assert [first["items"][0]["id"], second["items"][0]["id"]] == [other, down]

    row = next(c for c in every if c["id"] == strike)
    assert (row["step"], row["state"], row["strike"], row["county_code"]) == (
        "first_finding",
        "cut",
        1,
        "140521",
    )
    assert row["required_documents"] == ["written_explanation"]

    assert world.get("viewer", f"/cases/{other}").status_code == 200
    for path in (f"/cases/{other}", f"/cases/{other}/timeline"):
        r = world.get("county", path)
        assert r.status_code == 404 and r.json()["detail"] == f"no case {other} in your counties"


def test_case_detail_offers_the_events_this_caller_may_send(world: World) -> None:
    case_id = world.find(STRIKER, "outbound_internet", T0)
    county = world.get("county", f"/cases/{case_id}").json()
    assert county["institution"]["code"] == STRIKER
    assert county["step_title"].startswith("first finding")
    assert county["missing_documents"] == ["written_explanation"]
    assert county["documents_present"] == {}
    assert county["actions"]["total"] == 1
    assert county["actions"]["items"][0]["kind"] == "cut"
    assert county["actions"]["by_state"] == {"approved": 1}  # auto cut: corroborated, unprotected
    [reconnect] = county["allowed_events"]
    assert reconnect["event"] == "reconnect" and reconnect["ready"] is False
    assert reconnect["missing_documents"] == ["written_explanation"]
    assert "Jincheng art. 14" in reconnect["article"]
    assert world.get("viewer", f"/cases/{case_id}").json()["allowed_events"] == []
    assert world.get("auditor", f"/cases/{case_id}").json()["allowed_events"] == []
    assert [
        e["event"] for e in world.get("admin", f"/cases/{case_id}").json()["allowed_events"]
    ] == ["reconnect"]


def test_transition_refused_without_document_then_applied_once_with_it(world: World) -> None:
    case_id = world.find(STRIKER, "outbound_internet", T0)
    body = {"event": "reconnect", "reason": "explanation received", "data": {"ticket": "NOC-7"}}
    refused = world.post("county", f"/cases/{case_id}/transitions", body, key="k-1")
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "written_explanation" in problem["detail"]
    assert "Jincheng art. 14" in problem["article"]
    events = select(func.count(CaseEvent.id)).where(
        CaseEvent.case_id == case_id, CaseEvent.event == "reconnect"
    )
    assert world.count(events) == 0

    doc_id = world.document(case_id, "written_explanation")
    # the refused attempt left no idempotency record: the same key now does the work
    first = world.post("county", f"/cases/{case_id}/transitions", body, key="k-1")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    out = first.json()
    assert out["event"]["event"] == "reconnect" and out["event"]["to_state"] == "reconnected"
    assert out["event"]["data"]["ticket"] == "NOC-7"
    assert out["event"]["data"]["documents"] == {"written_explanation": [doc_id]}
    assert out["case"]["state"] == "reconnected" and out["case"]["is_open"] is False
    assert out["case"]["allowed_events"] == []
    assert out["case"]["actions"]["by_state"] == {"approved": 2}  # the cut and the restore
    assert [d["kind"] for d in out["case"]["deadlines"]] == ["summary_report"]  # art. 17

    again = world.post("county", f"/cases/{case_id}/transitions", body, key="k-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == out
    assert world.count(events) == 1
    restores = select(func.count(EnforcementAction.id)).where(
        EnforcementAction.case_id == case_id, EnforcementAction.kind == "restore"
    )
    assert world.count(restores) == 1

    changed = world.post("county", f"/cases/{case_id}/transitions", {**body, "reason": "x"}, "k-1")
    assert changed.status_code == 422 and "different request" in changed.json()["detail"]
    closed = world.post("county", f"/cases/{case_id}/transitions", body, key="k-2")
    assert closed.status_code == 409 and "closed" in closed.json()["detail"]


def test_second_strike_needs_the_city(world: World) -> None:
    first = world.find(STRIKER, "outbound_internet", T0)
    world.document(first, "written_explanation")
    r = world.post("county", f"/cases/{first}/transitions", {"event": "reconnect", "reason": "ok"})
    assert r.status_code == 201
    second = world.find(STRIKER, "dual_homed", T0 + timedelta(days=3))
    assert second != first
    detail = world.get("county", f"/cases/{second}").json()
    assert (detail["strike"], detail["step"]) == (2, "second_finding")
    assert detail["allowed_events"] == []  # reconnect at strike 2 is the city's (art. 14)
    world.document(second, "rectification_report")
    body = {"event": "reconnect", "reason": "rectified"}
    refused = world.post("county", f"/cases/{second}/transitions", body)
    assert refused.status_code == 409 and "city_admin" in refused.json()["detail"]
    assert "市医疗保障局确认" in refused.json()["article"]
    ok = world.post("admin", f"/cases/{second}/transitions", body)
    assert ok.status_code == 201 and ok.json()["case"]["state"] == "reconnected"
    assert [c["id"] for c in world.items("county", "/cases", strike=2)] == [second]


def test_roles_and_scope_on_writes(world: World) -> None:
    mine = world.find(LINK_DOWN, "link_down", T0)
    other = world.find(OTHER, "remote_control", T0)
    body = {"event": "close", "reason": "fault report filed"}
    for who in ("viewer", "auditor"):
        r = world.post(who, f"/cases/{mine}/transitions", body, key=f"{who}-1")
        assert r.status_code == 403 and who in r.json()["detail"]
        assert world.patch(who, f"/cases/{mine}", {"remediation": "x"}).status_code == 403
    r = world.post("county", f"/cases/{other}/transitions", {"event": "reconnect", "reason": "x"})
    assert r.status_code == 404
    assert world.patch("county", f"/cases/{other}", {"remediation": "x"}).status_code == 404
    bad = world.post("county", f"/cases/{mine}/transitions", {**body, "data": {"article": "x"}})
    assert bad.status_code == 422 and "article" in bad.json()["detail"]
    unknown = world.post(
        "county", f"/cases/{mine}/transitions", {"event": "explode", "reason": "x"}
    )
    assert unknown.status_code == 409 and "close" in unknown.json()["detail"]
    blank = world.post("county", f"/cases/{mine}/transitions", {"event": "close", "reason": ""})
    assert blank.status_code == 422
    assert world.count(select(func.count(CaseEvent.id)).where(CaseEvent.event == "close")) == 0
    assert world.count(select(func.count(Case.id)).where(Case.is_open.is_(False))) == 0

    world.document(mine, "fault_report")
    nul = world.post("county", f"/cases/{mine}/transitions", {**body, "data": {"n": "a\x00b"}})
    assert nul.status_code == 422, nul.text  # PostgreSQL cannot store it: refused up front
    done = world.post("county", f"/cases/{mine}/transitions", body)
    assert done.status_code == 201 and done.json()["case"]["state"] == "closed"


def test_patch_remediation_and_timeline(world: World) -> None:
    case_id = world.find(STRIKER, "outbound_internet", T0)
    text = "拆除双网卡，重装终端系统，加强管理"
    r = world.patch("county", f"/cases/{case_id}", {"remediation": text})
    assert r.status_code == 200 and r.json()["remediation"] == text
    assert world.get("viewer", f"/cases/{case_id}").json()["remediation"] == text
    audited = select(func.count(AuditEvent.id)).where(AuditEvent.action == "case.remediation")
    assert world.count(audited) == 1
    assert world.patch("county", f"/cases/{case_id}", {"state": "closed"}).status_code == 422
    assert (
        world.patch("county", f"/cases/{case_id}", {"remediation": None}).json()["remediation"]
        is None
    )

    world.document(case_id, "written_explanation")
    world.post("county", f"/cases/{case_id}/transitions", {"event": "reconnect", "reason": "ok"})
    timeline = world.get("auditor", f"/cases/{case_id}/timeline").json()
    kinds = [e["type"] for e in timeline["entries"]]
    assert kinds[0] == "detection"
    assert kinds.count("case_event") == 2  # opened, reconnect
    assert kinds.count("action") == 2 and kinds.count("document") == 1
    times = [e["at"] for e in timeline["entries"]]
    parsed = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]
    assert parsed == sorted(parsed)
    reconnect = next(e for e in timeline["entries"] if e["summary"].startswith("reconnect"))
    assert (
        reconnect["data"]["reason"] == "ok" and "Jincheng art. 14" in reconnect["data"]["article"]
    )
