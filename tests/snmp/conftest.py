"""Real SNMP peers for the collector's tests: Debian's snmpd and snmpsim serving the lab
routers built from lab/sample/inventory-small.yaml (with the default scenario's anomalies).

Every agent is a lab.snmp process ended by its PID when the module's tests are done."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update

from core.db import session_scope
from core.inventory import import_file
from core.models import Device
from core.settings import Settings, load_settings
from lab.snmp.agents import NetSnmpd, SnmpSim, V3User
from lab.snmp.routers import LabRouters, routers_from_inventory
from lab.snmp.snmprec import write_snmprec

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "lab/sample/inventory-small.yaml"
SNMPD_V3 = V3User("ew-test", "auth-pass-123", "priv-pass-123")


@pytest.fixture(scope="session")
def snmpd() -> Iterator[NetSnmpd]:
    """net-snmp snmpd: community ``public`` and SNMPv3 user ``ew-test`` (SHA/AES)."""
    with NetSnmpd(community="public", v3_user=SNMPD_V3, sys_name="ew-snmpd") as agent:
        yield agent


@dataclass
class Lab:
    routers: LabRouters
    data_dir: Path
    v2c: SnmpSim
    v3: SnmpSim
    v3_device: str
    v3_user: V3User

    def port_of(self, device: str) -> int:
        return self.v3.port if device == self.v3_device else self.v2c.port


def serve(routers: list, data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    for r in routers:
        write_snmprec(r, data_dir / f"{r.name}.snmprec")
    return data_dir


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """snmpsim for the v2c routers, and a v3-only snmpsim for the inventory's v3 device."""
    routers = routers_from_inventory(SMALL)
    data = serve(routers, tmp_path_factory.mktemp("snmprec"))
    (v3_device,) = routers.scenario["v3_only"]
    user = V3User.from_inventory(routers.by_name(v3_device).snmp)
    with (
        SnmpSim(data) as v2c,
        SnmpSim(data, v3_user=user, v3_only=True, default_context=v3_device) as v3,
    ):
        yield Lab(routers, data, v2c, v3, v3_device, user)


def fast_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "snmp_timeout_s": 0.5,
        "snmp_retries": 1,
        "snmp_concurrency": 8,
        "snmp_device_deadline_s": 20.0,
    }
    values.update(overrides)
    return load_settings(**values)


def import_lab(url: str, lab: Lab) -> None:
    """The small inventory with every simulated router's port set; devices without a
    simulated router (the LNS) are disabled."""
    served = {r.name for r in lab.routers}
    with session_scope(url) as s:
        import_file(s, SMALL, actor="test")
        s.execute(update(Device).where(Device.name.not_in(served)).values(enabled=False))
        s.execute(update(Device).values(snmp_port=lab.v2c.port))
        s.execute(update(Device).where(Device.name == lab.v3_device).values(snmp_port=lab.v3.port))


@pytest.fixture
def lab_db(db_url: str, lab: Lab) -> str:
    import_lab(db_url, lab)
    return db_url
