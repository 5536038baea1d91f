"""End to end over loopback UDP: softflowd → listener → observations stored → rules engine.
Datagrams from an unregistered source are dropped, alerted once, and never make a detection."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from peers import SOFTFLOWD, Pkt, needs_peers, softflowd_export, write_pcap
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from collector.netflow.listener import NetflowListener
from collector.netflow.pipeline import Pipeline
from core.db import make_engine
from core.models import (
    AuditEvent,
    BackbonePrefix,
    County,
    Exporter,
    Institution,
    InstitutionKind,
    IpAllocation,
    Observation,
)

pytestmark = [needs_peers, pytest.mark.slow]

T0 = 1_700_000_000.0


def _traffic(prefix: str) -> list[Pkt]:
    """A terminal of the institution reaching the internet: web, RDP, OpenVPN, and an
    in-backbone flow that must not count."""
    pkts = []
    for i in range(5):
        src = f"{prefix}.{i + 1}"
        pkts.append(Pkt(T0 + i, src, "203.0.113.10", 6, 40000 + i, 443, payload=100))
        pkts.append(Pkt(T0 + i + 0.1, src, "203.0.113.11", 6, 41000 + i, 3389, payload=50))
        pkts.append(Pkt(T0 + i + 0.2, src, "198.51.100.7", 17, 42000 + i, 1194, payload=80))
        pkts.append(Pkt(T0 + i + 0.3, src, "10.200.0.1", 6, 43000 + i, 443, payload=10))
    return sorted(pkts, key=lambda p: p.ts)


def _seed(session: Session) -> int:
    county = County(code="140502", name="城区")
    session.add(county)
    session.flush()
    inst = Institution(
        code="H14050200001", name="医院甲", kind=InstitutionKind.HOSPITAL, county_id=county.id
    )
    other = Institution(
        code="H14050200002", name="医院乙", kind=InstitutionKind.HOSPITAL, county_id=county.id
    )
    session.add_all([inst, other])
    session.flush()
    session.add_all(
        [
            IpAllocation(institution_id=inst.id, prefix="10.1.0.0/16"),
            IpAllocation(institution_id=other.id, prefix="10.9.0.0/16"),
            BackbonePrefix(prefix="10.0.0.0/8", description="backbone"),
            Exporter(address="127.0.0.1", observation_domain=0, sampling_rate=1, enabled=True),
        ]
    )
    session.commit()
    return inst.id


def test_only_registered_exporter_makes_observations(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        inst_id = _seed(s)

    registered_pcap = tmp_path / "registered.pcap"
    write_pcap(registered_pcap, _traffic("10.1.0"))
    forged_pcap = tmp_path / "forged.pcap"
    write_pcap(forged_pcap, _traffic("10.9.0"))  # would implicate the other hospital
    forged = softflowd_export(forged_pcap, 10, "-a")
    assert forged

    pipeline = Pipeline(factory, "jincheng", template_path=tmp_path / "templates.json")
    listener = NetflowListener(pipeline, "127.0.0.1", [0, 0], flush_interval=3600)

    async def scenario() -> None:
        stop = asyncio.Event()
        await listener.start()
        v9_port, ipfix_port = listener.bound
        task = asyncio.create_task(listener.run(stop))
        with tempfile.TemporaryDirectory() as tmp:
            await asyncio.to_thread(
                subprocess.run,
                [
                    SOFTFLOWD,
                    "-r",
                    str(registered_pcap),
                    "-n",
                    f"127.0.0.1:{v9_port}",
                    "-v",
                    "9",
                    "-m",
                    "500000",
                    "-a",
                    "-p",
                    f"{tmp}/pid",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))  # a forger elsewhere on the network
            for d in forged:
                s.sendto(d, ("127.0.0.1", ipfix_port))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = sum(pipeline.decoder.stats.records.values())
            if got >= 20 and pipeline.stats.unknown_sources["127.0.0.2"] == len(forged):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(scenario())
    assert sum(pipeline.decoder.stats.records.values()) == 20  # one record per flow
    assert pipeline.stats.unknown_sources["127.0.0.2"] == len(forged)

    with factory() as s:
        rows = s.scalars(select(Observation)).all()
        kinds = {(o.kind, o.src_addr, o.dst_addr, o.dst_port) for o in rows}
        assert rows and all(o.institution_id == inst_id for o in rows)
        assert not any(o.src_addr.startswith("10.9.") for o in rows)
        assert all(o.exporter_id is not None for o in rows)
        assert ("outbound_internet", "10.1.0.1", "203.0.113.10", 443) in kinds
        assert ("remote_control", "10.1.0.2", "203.0.113.11", 3389) in kinds
        assert ("internet_vpn", "10.1.0.3", "198.51.100.7", 1194) in kinds
        assert not any(o.dst_addr == "10.200.0.1" for o in rows)  # inside the backbone
        rdp = next(o for o in rows if o.kind == "remote_control" and o.src_addr == "10.1.0.2")
        assert rdp.flows == 1 and rdp.packets == 1 and rdp.sample
        assert rdp.sample[0]["dst_port"] == 3389 and rdp.sample[0]["exporter"] == "127.0.0.1"
        alerts = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "netflow.unknown_exporter")
        ).all()
        assert [a.object_id for a in alerts] == ["127.0.0.2"]
    assert (tmp_path / "templates.json").exists()
    engine.dispose()
