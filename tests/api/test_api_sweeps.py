"""SNMP sweeps over the REST API against the real snmpsim lab (lab/snmp/lab.py SnmpLab): the
sweep row exists when POST answers 202, the background sweep polls the simulated routers and
ends ok with every device's result, a second API sweep while one runs is refused (409), and
only the city bureau may start one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.routers.sweeps import wait_for_sweeps
from core.inventory import import_file
from core.models import Device, Role, Sweep, SweepStatus
from core.settings import get_settings
from core.timeutil import utcnow
from core.tokens import create_token
from lab.snmp.lab import SnmpLab

SMALL = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
OWN = "140521"


@pytest.fixture(scope="module")
def snmp_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SnmpLab, Path]]:
    """snmpsim agents for every router of the small inventory, and that inventory with their
    ports; every agent is ended by PID afterwards."""
    work = tmp_path_factory.mktemp("api-snmplab")
    with SnmpLab(SMALL, work / "lab") as lab:
        yield lab, lab.write_inventory(work / "inventory.yaml")


@pytest.fixture
def fast_snmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in (
        ("SNMP_TIMEOUT_S", "0.5"),
        ("SNMP_RETRIES", "1"),
        ("SNMP_DEVICE_DEADLINE_S", "20"),
    ):
        monkeypatch.setenv(f"EDGEWARDEN_{name}", value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _tokens(session: Session) -> dict[str, str]:
    tokens = {}
    for role, counties, name in (
        (Role.CITY_ADMIN, [], "admin"),
        (Role.VIEWER, [], "viewer"),
        (Role.AUDITOR, [], "auditor"),
        (Role.COUNTY_OPERATOR, [OWN], "own_op"),
    ):
        _, tokens[name] = create_token(session, role=role, counties=counties, name=name)
    session.commit()
    return tokens


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _wait(client: TestClient, token: str, sweep_id: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/api/v1/sweeps/{sweep_id}", headers=_h(token)).json()
        if body["status"] != "running":
            return body
        time.sleep(0.2)
    raise AssertionError(f"sweep {sweep_id} still running after {timeout} s")


def test_sweep_runs_against_the_snmp_lab(
    session: Session, db_url: str, snmp_lab: tuple[SnmpLab, Path], fast_snmp: None
) -> None:
    lab, inventory = snmp_lab
    import_file(session, inventory, actor="test")
    tokens = _tokens(session)
    served = sorted(lab.ports)
    with TestClient(create_app(db_url)) as c:
        for role in ("viewer", "auditor", "own_op"):
            r = c.post("/api/v1/sweeps", json={"devices": served}, headers=_h(tokens[role]))
            assert r.status_code == 403, role
        r = c.post(
            "/api/v1/sweeps", json={"devices": ["no-such-router"]}, headers=_h(tokens["admin"])
        )
        assert r.status_code == 422 and "no-such-router" in r.json()["detail"]
        r = c.post("/api/v1/sweeps", json={"devices": []}, headers=_h(tokens["admin"]))
        assert r.status_code == 422
        assert session.scalar(select(func.count()).select_from(Sweep)) == 0

        r = c.post("/api/v1/sweeps", json={"devices": served}, headers=_h(tokens["admin"]))
        assert r.status_code == 202, r.text
        sweep_id = r.json()["id"]
        assert r.headers["location"] == f"/api/v1/sweeps/{sweep_id}" == r.json()["location"]
        # the row was committed before the answer
        row = session.get(Sweep, sweep_id)
        assert row is not None and (row.trigger, row.requested_by) == ("api", "admin")

        done = _wait(c, tokens["admin"], sweep_id)
        assert done["status"] == "ok", done
        assert (done["devices_total"], done["devices_ok"], done["devices_failed"]) == (
            len(served),
            len(served),
            0,
        )
        assert [d["device"] for d in done["devices"]] == served
        assert {d["status"] for d in done["devices"]} == {"ok"}
        assert all(d["varbinds"] > 0 and d["interfaces"] > 0 for d in done["devices"])
        assert done["observations"] > 0  # the lab's injected anomalies were found
        assert wait_for_sweeps(10)  # the background thread has ended

        listed = c.get("/api/v1/sweeps", headers=_h(tokens["viewer"])).json()["items"]
        assert [s["id"] for s in listed] == [sweep_id]
        # a county operator sees the sweep but only its own county's devices
        mine = c.get(f"/api/v1/sweeps/{sweep_id}", headers=_h(tokens["own_op"])).json()
        own_devices = set(
            session.scalars(
                select(Device.name).where(Device.county.has(code=OWN), Device.name.in_(served))
            )
        )
        assert own_devices and {d["device"] for d in mine["devices"]} == own_devices
        assert c.get("/api/v1/sweeps/999999", headers=_h(tokens["admin"])).status_code == 404


def test_second_api_sweep_is_refused_while_one_runs(
    session: Session, db_url: str, fast_snmp: None
) -> None:
    import_file(session, SMALL, actor="test")
    tokens = _tokens(session)
    running = Sweep(trigger="api", requested_by="someone", status=SweepStatus.RUNNING)
    session.add(running)
    session.commit()
    with TestClient(create_app(db_url)) as c:
        r = c.post("/api/v1/sweeps", json={}, headers=_h(tokens["admin"]))
        assert r.status_code == 409, r.text
        assert r.json()["sweep_id"] == running.id and "still running" in r.json()["detail"]
        assert session.scalar(select(func.count()).select_from(Sweep)) == 1

        # a running row whose process died long ago no longer blocks: it is marked failed
        running.started_at = utcnow() - timedelta(days=1)
        session.commit()
        device = session.scalars(select(Device.name).order_by(Device.name)).first()
        r = c.post(
            "/api/v1/sweeps",
            json={"devices": [device]},
            headers=_h(tokens["admin"]) | {"Idempotency-Key": "sweep-1"},
        )
        assert r.status_code == 202, r.text
        new_id = r.json()["id"]
        session.expire_all()
        old = session.get(Sweep, running.id)
        assert old is not None and old.status == SweepStatus.FAILED and "abandoned" in old.error  # type: ignore[operator]
        # a retry with the same key replays the answer, it does not start another sweep
        again = c.post(
            "/api/v1/sweeps",
            json={"devices": [device]},
            headers=_h(tokens["admin"]) | {"Idempotency-Key": "sweep-1"},
        )
        assert again.status_code == 202 and again.json()["id"] == new_id
        assert again.headers.get("Idempotent-Replayed") == "true"
        # the device in the sample inventory answers nobody: the sweep ends failed, not stuck
        done = _wait(c, tokens["admin"], new_id)
        assert done["status"] == "failed" and done["devices"][0]["status"] != "ok"


def test_jobs_lists_the_scheduler_status(session: Session, db_url: str) -> None:
    import_file(session, SMALL, actor="test")
    tokens = _tokens(session)
    with TestClient(create_app(db_url)) as c:
        r = c.get("/api/v1/jobs", headers=_h(tokens["viewer"]))
        assert r.status_code == 200 and isinstance(r.json(), list)
        assert c.get("/api/v1/jobs").status_code == 401
