"""The listener with its receiver processes, end to end over loopback UDP: softflowd exports
to it, the child processes read the sockets and hand batches over their pipes, observations
land in the database, stopping drains everything the kernel had accepted, the children's
counters reach /metrics, and a child survives a group signal and is restarted after a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from builders import v5
from peers import SOFTFLOWD, needs_peers, scenario_packets, softflowd_export, write_pcap
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from collector.netflow.listener import NetflowListener
from collector.netflow.pipeline import Pipeline
from core.db import make_engine
from core.models import (
    BackbonePrefix,
    County,
    Exporter,
    Institution,
    InstitutionKind,
    IpAllocation,
    Observation,
)


def _seed(session: Session) -> None:
    county = County(code="140502", name="城区")
    session.add(county)
    session.flush()
    inst = Institution(
        code="H14050200001", name="医院甲", kind=InstitutionKind.HOSPITAL, county_id=county.id
    )
    session.add(inst)
    session.flush()
    session.add_all(
        [
            IpAllocation(institution_id=inst.id, prefix="10.1.0.0/16"),
            IpAllocation(institution_id=inst.id, prefix="10.2.0.0/16"),
            BackbonePrefix(prefix="10.0.0.0/8", description="backbone"),
            *(
                Exporter(address="127.0.0.1", observation_domain=d, sampling_rate=1, enabled=True)
                for d in (0, 1)
            ),
        ]
    )
    session.commit()


def _softflowd(pcap: Path, port: int, version: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                *(SOFTFLOWD, "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", str(version)),
                *("-m", "500000", "-a", "-p", f"{tmp}/pid"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )


def _metric(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{{{labels}}} not in /metrics")


@needs_peers
@pytest.mark.slow
def test_receiver_processes_store_softflowd_flows_and_drain_on_stop(
    db_url_sqlite: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url_sqlite)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        _seed(s)
    pcap = tmp_path / "flows.pcap"
    write_pcap(pcap, scenario_packets(n_flows=300))
    # the reference: the same exports decoded in this process by a pipeline of its own
    exports = {v: softflowd_export(pcap, v, "-a") for v in (9, 10)}
    ref = Pipeline(factory, "jincheng")
    for datagrams in exports.values():
        ref.process([(d, "127.0.0.1") for d in datagrams])
    want_records = sum(ref.decoder.stats.records.values())
    drained, _ = ref.take()
    want_flows: Counter[str] = Counter()
    for chunk in drained.chunks(10_000):
        for a in chunk:
            want_flows[a.kind] += a.flows
    assert want_records > 300 and want_flows["outbound_internet"] > 0

    pipeline = Pipeline(factory, "jincheng", template_path=tmp_path / "templates.json")
    listener = NetflowListener(pipeline, "127.0.0.1", [0, 0], flush_interval=3600)
    children = []

    async def scenario() -> None:
        stop = asyncio.Event()
        await listener.start()
        children.extend(listener.receivers)
        assert len(children) == 2
        assert all(c.pid != os.getpid() and c.proc.poll() is None for c in children)
        task = asyncio.create_task(listener.run(stop))
        await asyncio.sleep(0.1)
        for c in children:  # paused (our own children, by PID): the kernel holds the exports
            os.kill(c.pid, signal.SIGSTOP)
        for port, version in zip(listener.bound, (9, 10), strict=True):
            await asyncio.to_thread(_softflowd, pcap, port, version)
        assert sum(pipeline.decoder.stats.records.values()) == 0
        # stop while everything is still in the sockets' buffers; the children resume only
        # after they were told to stop: the drain on stop must read, decode and write it all
        stop.set()
        loop = asyncio.get_running_loop()
        for c in children:
            loop.call_later(0.3, os.kill, c.pid, signal.SIGCONT)
        await task

    asyncio.run(scenario())
    assert all(c.proc.returncode == 0 for c in children)  # exited by themselves
    assert sum(pipeline.decoder.stats.records.values()) == want_records
    assert pipeline.stats.queue_dropped == 0
    sent = {port: len(exports[v]) for port, v in zip(listener.bound, (9, 10), strict=True)}
    for port, n in sent.items():
        rx = pipeline.stats.receivers[f"127.0.0.1:{port}"]
        assert rx["datagrams"] == n and rx["dropped"] == 0 and rx["kernel"] == 0
    text = generate_latest(REGISTRY).decode()
    for port, n in sent.items():
        assert (
            _metric(
                text, "edgewarden_netflow_receiver_datagrams_total", f'listener="127.0.0.1:{port}"'
            )
            == n
        )
    with factory() as s:
        got: Counter[str] = Counter()
        for o in s.scalars(select(Observation)):
            got[o.kind] += o.flows
    assert got == want_flows
    engine.dispose()


def test_receiver_process_ignores_group_signals_and_is_restarted_after_a_crash(
    db_url_sqlite: str,
) -> None:
    engine = make_engine(db_url_sqlite)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        _seed(s)
    pipeline = Pipeline(factory, "jincheng")
    listener = NetflowListener(pipeline, "127.0.0.1", [0], flush_interval=3600)
    records = [{"src": "10.1.0.9", "dst": "203.0.113.5", "dport": 3389}] * 10

    def records_seen() -> int:
        return sum(pipeline.decoder.stats.records.values())

    async def until(cond: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():  # type: ignore[operator]
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        stop = asyncio.Event()
        await listener.start()
        task = asyncio.create_task(listener.run(stop))
        port = listener.bound[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            first = listener.receivers[0]
            os.kill(first.pid, signal.SIGTERM)  # as systemd or Ctrl-C would: ignored
            await asyncio.sleep(0.3)
            assert first.proc.poll() is None
            for i in range(5):
                out.sendto(v5(records, seq=i * 10), ("127.0.0.1", port))
            await until(lambda: records_seen() == 50)
            os.kill(first.pid, signal.SIGKILL)  # a crash: the listener starts another
            await asyncio.to_thread(first.proc.wait, 10)
            for i in range(5, 10):  # meanwhile the kernel holds these for the new child
                out.sendto(v5(records, seq=i * 10), ("127.0.0.1", port))
            await until(lambda: listener.receivers and listener.receivers[0].pid != first.pid)
            await until(lambda: records_seen() == 100)
        stop.set()
        await task

    asyncio.run(scenario())
    assert pipeline.decoder.stats.sequence_gaps == {}
    with factory() as s:
        rdp = s.scalars(select(Observation).where(Observation.kind == "remote_control")).one()
        assert rdp.flows == 100
    engine.dispose()
