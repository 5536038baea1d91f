"""Observations and detections over the API: made by the rules engine, filtered, paged and
scoped to the caller's counties (city-level rows hidden from county operators)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from core.inventory import import_file
from core.models import Institution, Observation, ObservationSource, Role
from core.tokens import create_token
from rules import engine

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.client.get(
            "/api/v1" + path, params=params, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )

    def items(self, who: str, path: str, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            r = self.get(who, path, **params, **({"cursor": cursor} if cursor else {}))
            assert r.status_code == 200, r.text
            out += r.json()["items"]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return out


def _obs(
    session: Session,
    key: str,
    kind: str,
    source: ObservationSource,
    inst_code: str | None,
    *,
    at: datetime,
    flows: int = 5,
    seconds: int = 120,
) -> Observation:
    inst_id = None
    if inst_code is not None:
        inst_id = session.scalar(select(Institution.id).where(Institution.code == inst_code))
    obs = Observation(
        key=key,
        source=source,
        kind=kind,
        institution_id=inst_id,
        src_addr="10.145.32.2",
        dst_addr="203.0.113.9",
        dst_port=3389 if kind == "remote_control" else 443,
        protocol=6,
        first_seen=at,
        last_seen=at + timedelta(seconds=seconds),
        flows=flows,
        packets=flows * 10,
        octets=flows * 1500,
        sample=[{"src_port": 50000, "dst_port": 443}],
    )
    session.add(obs)
    return obs


@pytest.fixture
def api(session: Session, db_url: str) -> Api:
    import_file(session, SMALL, actor="test")
    observations = [
        # Qinshui (140521): a probe hit (trusted: corroborated) and weak remote-control traffic
        _obs(session, "o-qs-probe", "outbound_internet", ObservationSource.PROBE,
             "H14052100001", at=T0),
        _obs(session, "o-qs-rdp", "remote_control", ObservationSource.NETFLOW,
             "P14052100002", at=T0 + timedelta(hours=1), flows=1, seconds=5),
        # Chengqu (140502): strong remote-control traffic
        _obs(session, "o-cq-rdp", "remote_control", ObservationSource.NETFLOW,
             "H14050200003", at=T0 + timedelta(hours=2)),
        # city-level: no institution
        _obs(session, "o-city", "outbound_internet", ObservationSource.NETFLOW, None,
             at=T0 + timedelta(hours=3)),
    ]  # fmt: skip
    session.flush()
    engine.observe(session, observations, actor="test-collector")
    tokens = {}
    for who, role, counties in [
        ("admin", Role.CITY_ADMIN, []),
        ("auditor", Role.AUDITOR, []),
        ("county", Role.COUNTY_OPERATOR, ["140521"]),
    ]:
        _, tokens[who] = create_token(session, role=role, counties=counties)
    session.commit()
    return Api(TestClient(create_app(db_url)), tokens)


def test_observations_filters_and_scope(api: Api) -> None:
    every = api.items("admin", "/observations")
    assert len(every) == 4
    assert [o["id"] for o in every] == sorted((o["id"] for o in every), reverse=True)
    assert {o["institution_code"] for o in api.items("auditor", "/observations")} == {
        "H14052100001",
        "P14052100002",
        "H14050200003",
        None,
    }
    mine = api.items("county", "/observations")
    assert {o["institution_code"] for o in mine} == {"H14052100001", "P14052100002"}
    assert {o["kind"] for o in api.items("admin", "/observations", kind="remote_control")} == {
        "remote_control"
    }
    assert [o["institution_code"] for o in api.items("admin", "/observations", source="probe")] == [
        "H14052100001"
    ]
    assert len(api.items("admin", "/observations", institution="H14050200003")) == 1
    assert api.items("county", "/observations", institution="H14050200003") == []
    # since/until on last_seen (first_seen + 120 s or + 5 s)
    later = api.items("admin", "/observations", since=(T0 + timedelta(hours=1)).isoformat())
    assert len(later) == 3
    window = api.items(
        "admin",
        "/observations",
        since="2026-11-01T03:00:00",  # naive: UTC
        until=(T0 + timedelta(hours=2)).isoformat(),
    )
    assert [o["institution_code"] for o in window] == ["P14052100002"]
    assert (
        api.get("admin", "/observations", since=T0.isoformat(), until=T0.isoformat()).status_code
        == 422
    )
    assert api.get("admin", "/observations", since="yesterday").status_code == 422
    assert api.get("admin", "/observations", source="carrier-pigeon").status_code == 422

    page = api.get("admin", "/observations", limit=3).json()
    assert len(page["items"]) == 3 and page["next_cursor"]


def test_observation_detail(api: Api) -> None:
    city = next(o for o in api.items("admin", "/observations") if o["institution_code"] is None)
    qs = next(
        o for o in api.items("admin", "/observations") if o["institution_code"] == "H14052100001"
    )
    detail = api.get("county", f"/observations/{qs['id']}").json()
    assert detail["key"] == "o-qs-probe" and detail["sample"] == [
        {"src_port": 50000, "dst_port": 443}
    ]
    assert len(detail["detection_ids"]) == 1
    assert api.get("county", f"/observations/{city['id']}").status_code == 404
    assert api.get("admin", f"/observations/{city['id']}").json()["detection_ids"] == []
    cq = next(
        o for o in api.items("admin", "/observations") if o["institution_code"] == "H14050200003"
    )
    missing = api.get("county", f"/observations/{cq['id']}")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert api.get("admin", "/observations/999999").status_code == 404


def test_detections_filters_detail_and_scope(api: Api) -> None:
    every = api.items("admin", "/detections")
    # the city-level observation names no institution: not a finding
    assert {d["institution_code"] for d in every} == {
        "H14052100001",
        "P14052100002",
        "H14050200003",
    }
    probe = next(d for d in every if d["institution_code"] == "H14052100001")
    assert probe["corroborated"] and probe["kind"] == "outbound_internet" and probe["case_id"]
    assert probe["counted"] is True
    weak = next(d for d in every if d["institution_code"] == "P14052100002")
    assert weak["corroborated"] is False

    mine = api.items("county", "/detections")
    assert {d["institution_code"] for d in mine} == {"H14052100001", "P14052100002"}
    assert [d["id"] for d in api.items("admin", "/detections", corroborated=False)] == [weak["id"]]
    assert len(api.items("admin", "/detections", corroborated=True)) == 2
    assert [d["id"] for d in api.items("admin", "/detections", case_id=probe["case_id"])] == [
        probe["id"]
    ]
    assert len(api.items("admin", "/detections", kind="remote_control")) == 2
    assert [d["id"] for d in api.items("admin", "/detections", source="probe")] == [probe["id"]]
    assert len(api.items("county", "/detections", institution="H14050200003")) == 0
    until = api.items("admin", "/detections", until=(T0 + timedelta(minutes=30)).isoformat())
    assert [d["id"] for d in until] == [probe["id"]]  # detected_at = the observation's last_seen
    since = api.items("admin", "/detections", since=(T0 + timedelta(hours=2)).isoformat())
    assert {d["institution_code"] for d in since} == {"H14050200003"}

    detail = api.get("county", f"/detections/{probe['id']}").json()
    assert detail["evidence"]["observation_key"] == "o-qs-probe"
    assert detail["evidence"]["dst_addr"] == "203.0.113.9"
    assert detail["observation"]["id"] == probe["observation_id"]
    assert detail["observation"]["institution_code"] == "H14052100001"
    other = next(d for d in every if d["institution_code"] == "H14050200003")
    assert api.get("county", f"/detections/{other['id']}").status_code == 404
    assert api.get("admin", f"/detections/{other['id']}").status_code == 200
