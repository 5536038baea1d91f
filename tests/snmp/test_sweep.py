"""Whole sweeps over the lab inventory served by snmpsim (v2c and one v3-only device): the
injected anomalies become observations with the right institution and link, the rules turn
them into detections, history is kept across sweeps, and a dead device stalls nobody."""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from collector.snmp.sweep import run_sweep
from core.db import session_scope
from core.models import (
    ArpEntry,
    Detection,
    Device,
    DeviceRole,
    Institution,
    Interface,
    InterfaceSample,
    Link,
    MacChange,
    Observation,
    ObservationSource,
    Sweep,
    SweepDevice,
    SweepDeviceStatus,
    SweepStatus,
)
from lab.snmp.agents import SilentAgent, SnmpSim
from lab.snmp.snmprec import Arp
from tests.snmp.conftest import REPO, Lab, fast_settings, import_lab, serve


def _link(s: Session, device: str, interface: str) -> Link:
    return s.scalars(
        select(Link)
        .join(Device, Link.device_id == Device.id)
        .where(Device.name == device, Link.interface == interface)
    ).one()


def _obs(s: Session, kind: str) -> list[Observation]:
    return list(s.scalars(select(Observation).where(Observation.kind == kind)))


def test_sweep_finds_the_injected_anomalies(lab_db: str, lab: Lab) -> None:
    sc = lab.routers.scenario
    seen: list[tuple[str, int, int]] = []
    result = asyncio.run(
        run_sweep(
            lab_db, settings=fast_settings(), progress=lambda r, d, t: seen.append((r.name, d, t))
        )
    )
    assert result.status == SweepStatus.OK, [(d.name, d.status, d.error) for d in result.devices]
    assert {d.name for d in result.devices} == {r.name for r in lab.routers}
    assert [d for _, d, _ in seen] == list(range(1, len(lab.routers) + 1))
    with session_scope(lab_db) as s:
        # unauthorized_ip: right IP, institution and link
        (want,) = sc["unauthorized_ip"]
        (obs,) = _obs(s, "unauthorized_ip")
        link = _link(s, want["device"], want["interface"])
        assert obs.source == ObservationSource.SNMP
        assert (obs.src_addr, obs.link_id, obs.institution_id) == (
            want["ip"],
            link.id,
            link.institution_id,
        )
        assert s.get(Institution, obs.institution_id).code == want["institution"]  # type: ignore[union-attr]
        assert obs.sample[0]["mac"] == want["mac"]
        # network_extension: the link's institution, the owner in the evidence
        (want,) = sc["network_extension"]
        (obs,) = _obs(s, "network_extension")
        link = _link(s, want["device"], want["interface"])
        assert (obs.src_addr, obs.link_id, obs.institution_id) == (
            want["ip"],
            link.id,
            link.institution_id,
        )
        assert obs.sample[0]["allocated_to"] == want["allocated_to"]
        # outbound_internet: the default route and the internet route out of that link
        got = {(o.dst_addr, o.link_id, o.institution_id) for o in _obs(s, "outbound_internet")}
        expect = set()
        for w in sc["outbound_internet"]:
            link = _link(s, w["device"], w["interface"])
            expect.add((f"{w['dest']}/{w['prefix_len']}", link.id, link.institution_id))
        assert got == expect
        # link_down only where the service did not cut
        (want,) = sc["link_down"]
        (obs,) = _obs(s, "link_down")
        assert obs.link_id == _link(s, want["device"], want["interface"]).id
        assert sc["cut"], "the lab inventory has a cut link"
        cut_ids = {_link(s, c["device"], c["interface"]).id for c in sc["cut"]}
        assert not cut_ids & {o.link_id for o in _obs(s, "link_down")}
        # and the rules made detections of them
        kinds = {d.kind for d in s.scalars(select(Detection))}
        assert {"unauthorized_ip", "network_extension", "link_down", "outbound_internet"} <= kinds
        total_obs = s.scalar(select(func.count()).select_from(Observation))
        assert total_obs == result.observations == 5
        # interfaces mapped to their links, one counter sample each
        itf = s.scalars(select(Interface).where(Interface.link_id == link.id)).one()
        assert itf.name == sc["outbound_internet"][0]["interface"]
        assert s.scalar(select(func.count()).select_from(InterfaceSample)) == sum(
            len(r.interfaces) for r in lab.routers
        )
        sweep = s.get(Sweep, result.sweep_id)
        assert sweep is not None and sweep.finished_at is not None
        assert (sweep.devices_total, sweep.devices_ok, sweep.devices_failed) == (
            len(lab.routers),
            len(lab.routers),
            0,
        )
        assert sweep.varbinds == result.varbinds > 0
        rows = s.scalars(select(SweepDevice).where(SweepDevice.sweep_id == sweep.id)).all()
        assert {r.status for r in rows} == {SweepDeviceStatus.OK}
        old = next(n for n, t in sc["tables"].items() if t == "old")
        old_row = next(r for r in rows if r.device.name == old)
        assert old_row.tables["contexts"]["default"]["arp"] == "ipNetToMediaTable"

    # a second sweep updates the same observations and adds no detection
    again = asyncio.run(run_sweep(lab_db, settings=fast_settings()))
    assert again.status == SweepStatus.OK and again.detections == 0
    with session_scope(lab_db) as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 5
        (obs,) = _obs(s, "unauthorized_ip")
        assert obs.last_seen > obs.first_seen


def test_arp_history_inactive_and_mac_change(db_url_sqlite: str, lab: Lab, tmp_path: Path) -> None:
    import_lab(db_url_sqlite, lab)
    name = next(r.name for r in lab.routers if r.name != lab.v3_device and len(r.arp) >= 3)
    assert (
        asyncio.run(run_sweep(db_url_sqlite, device_names=[name], settings=fast_settings())).status
        == SweepStatus.OK
    )
    # the router now lists one entry less and one IP with a new MAC
    spec = copy.deepcopy(lab.routers.by_name(name))
    gone = spec.arp.pop(0)
    moved = spec.arp[0]
    spec.arp[0] = Arp(moved.if_index, moved.ip, "02:00:5e:00:53:01")
    with SnmpSim(serve([spec], tmp_path / "changed")) as sim, session_scope(db_url_sqlite) as s:
        s.execute(update(Device).where(Device.name == name).values(snmp_port=sim.port))
        s.commit()
        res = asyncio.run(run_sweep(db_url_sqlite, device_names=[name], settings=fast_settings()))
    assert res.status == SweepStatus.OK
    with session_scope(db_url_sqlite) as s:
        dev_id = s.scalar(select(Device.id).where(Device.name == name))
        rows = s.scalars(select(ArpEntry).where(ArpEntry.device_id == dev_id)).all()
        by_key = {(r.ip, r.mac): r for r in rows}
        assert by_key[(gone.ip, gone.mac)].active is False
        assert by_key[(moved.ip, moved.mac)].active is False
        new = by_key[(moved.ip, "02:00:5e:00:53:01")]
        assert new.active and new.link_id is not None and new.institution_id is not None
        assert sum(r.active for r in rows) == len(spec.arp)
        (change,) = s.scalars(select(MacChange).where(MacChange.device_id == dev_id)).all()
        assert (change.ip, change.old_mac, change.new_mac) == (
            moved.ip,
            moved.mac,
            "02:00:5e:00:53:01",
        )
        assert change.link_id == new.link_id
        kept = by_key[(gone.ip, gone.mac)]
        assert kept.last_seen < new.last_seen  # history keeps when it was last seen


def _add_device(url: str, name: str, port: int) -> None:
    from core.crypto import secret_box

    with session_scope(url) as s:
        s.add(
            Device(
                name=name,
                mgmt_address="127.0.0.1",
                device_type="cisco_ios",
                role=DeviceRole.EDGE_ROUTER,
                snmp_port=port,
                snmp_community_enc=secret_box().encrypt("public"),
            )
        )


def test_a_dead_device_does_not_stall_the_sweep(db_url_sqlite: str, lab: Lab) -> None:
    import_lab(db_url_sqlite, lab)
    with SilentAgent() as silent:
        _add_device(db_url_sqlite, "zz-dead", silent.port)
        t0 = time.perf_counter()
        res = asyncio.run(run_sweep(db_url_sqlite, settings=fast_settings(snmp_concurrency=4)))
        took = time.perf_counter() - t0
    assert res.status == SweepStatus.PARTIAL
    dead = next(d for d in res.devices if d.name == "zz-dead")
    assert dead.status == SweepDeviceStatus.TIMEOUT
    assert all(d.ok for d in res.devices if d.name != "zz-dead")
    # the dead device costs its 2 × 0.5 s, once, in parallel with the others
    assert took < 3.0, took
    with session_scope(db_url_sqlite) as s:
        sweep = s.get(Sweep, res.sweep_id)
        assert sweep is not None
        assert (sweep.devices_ok, sweep.devices_failed) == (len(lab.routers), 1)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EDGEWARDEN_DATABASE_URL": url,
        "EDGEWARDEN_SNMP_TIMEOUT_S": "0.3",
        "EDGEWARDEN_SNMP_RETRIES": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "core", "sweep", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_cli_sweep_lines_table_and_exit_codes(db_url_sqlite: str, lab: Lab) -> None:
    import_lab(db_url_sqlite, lab)
    with SilentAgent() as silent:
        _add_device(db_url_sqlite, "zz-dead", silent.port)
        failed = _cli(db_url_sqlite)
    assert failed.returncode == 1, failed.stderr
    lines = [ln for ln in failed.stderr.splitlines() if ln.split(" ", 1)[0].count("/") == 1]
    assert len(lines) == len(lab.routers) + 1  # a plain line per device without a tty
    assert any("zz-dead timeout" in ln for ln in lines)
    assert "zz-dead" in failed.stdout and "timeout" in failed.stdout
    assert f"{len(lab.routers)}/{len(lab.routers) + 1} devices ok" in failed.stdout
    ok_name = lab.routers[0].name
    ok = _cli(db_url_sqlite, "--device", ok_name)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1/1 devices ok" in ok.stdout
    unknown = _cli(db_url_sqlite, "--device", "no-such-router")
    assert unknown.returncode == 2
    assert "unknown device(s): no-such-router" in unknown.stderr


def test_more_hosts_than_the_policy_allows_is_network_extension(
    lab_db: str, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``max_hosts_per_link`` is policy data (Jincheng art. 11, Jilin art. 26: the line must not
    serve others); the lab puts every address of one allocation behind one link."""
    (want,) = lab.routers.scenario["many_hosts"]
    ordinary = 4  # three hosts per link, plus one injected address on the anomaly links
    assert want["hosts"] > ordinary + 1
    for src in (REPO / "rules" / "policies").glob("*.yaml"):
        data = yaml.safe_load(src.read_text(encoding="utf-8"))
        data["detection"]["max_hosts_per_link"] = {"default": ordinary}
        (tmp_path / src.name).write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    monkeypatch.setenv("EDGEWARDEN_POLICY_DIRS", str(tmp_path))

    result = asyncio.run(run_sweep(lab_db, settings=fast_settings()))
    assert result.status == SweepStatus.OK
    with session_scope(lab_db) as s:
        crowded = [o for o in _obs(s, "network_extension") if o.key.endswith(":hosts")]
        assert len(crowded) == 1, [o.key for o in crowded]
        (obs,) = crowded
        assert obs.link_id == _link(s, want["device"], want["interface"]).id
        assert (obs.sample[0]["hosts"], obs.sample[0]["limit"]) == (want["hosts"], ordinary)
        assert s.scalar(select(Detection).where(Detection.observation_id == obs.id)) is not None
