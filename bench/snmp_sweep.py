"""SNMP sweep cost: CPU µs per varbind and wall time of a 50-router sweep, against net-snmp's
``snmpbulkwalk`` fetching the same columns from the same simulated agents in the same run.

    uv run python bench/snmp_sweep.py [--routers 50] [--simulators 4] [--pysnmp-routers 3]

Agents: ``--routers`` lab ``big_router`` files (400 sub-interfaces, 3,000 ARP entries, routes)
served by ``--simulators`` snmpsim processes (lab.snmp.SnmpSimPool), router i on process
i mod K, so the simulator is spread over processes. Measured, in this order:

1. baseline: for every router, ``snmpget`` of sysUpTime/sysName and one ``snmpbulkwalk -Cr25``
   per column (the 11 columns the poller reads), ``snmp_concurrency`` processes at a time;
   CPU from ``getrusage(RUSAGE_CHILDREN)``; varbinds = rows printed.
2. ours: ``run_sweep`` (the real thing: poll, map to a 20,000-link inventory, ARP history,
   samples, observations) into a fresh SQLite file (first sweep: inserts), then again
   (history exists: updates); CPU = this process's CPU time (all threads); also the poll
   alone (no database) for the collector's own cost.
3. reference: stock pysnmp (``bulk_cmd``, same walker) on ``--pysnmp-routers`` routers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from collector.snmp import oids
from collector.snmp.poller import DeviceTarget, PollOptions, poll_device
from collector.snmp.sweep import run_sweep
from core.crypto import generate_key, secret_box
from core.db import session_scope
from core.migrate import upgrade
from core.models import (
    County,
    Device,
    DeviceRole,
    Institution,
    InstitutionKind,
    IpAllocation,
    Link,
    LinkKind,
)
from core.settings import load_settings
from lab.snmp.agents import SnmpSimPool
from lab.snmp.routers import big_router
from lab.snmp.snmprec import write_snmprec

COLUMNS = {**oids.INTERFACE_COLUMNS, **oids.ARP_NEW, **oids.ROUTES_NEW}
TARGET_US_PER_VARBIND = 60.0
TARGET_WALL_RATIO = 2.0


def dotted(oid: tuple[int, ...]) -> str:
    return ".".join(map(str, oid))


def make_data(routers: int, data_dir: Path) -> list[str]:
    names = [f"bench-edge-{i:02d}" for i in range(routers)]
    for name in names:
        path = data_dir / f"{name}.snmprec"
        if not path.exists():
            write_snmprec(big_router(name), path)
    return names


def make_db(url: str, names: list[str], ports: list[int]) -> None:
    """50 devices, the 400 institutions of big_router (one /26 each) and a link per
    sub-interface per device, so mapping and ARP history do their real work."""
    upgrade(url)
    box = secret_box()
    with session_scope(url) as s:
        county = County(code="140500", name="晋城市", policy="jincheng")
        s.add(county)
        s.flush()
        s.execute(
            insert(Institution),
            [
                {
                    "code": f"H140500{i + 1:05d}",
                    "name": f"模拟医院{i + 1}",
                    "kind": InstitutionKind.HOSPITAL,
                    "county_id": county.id,
                }
                for i in range(400)
            ],
        )
        s.execute(
            insert(IpAllocation),
            [
                {"institution_id": i + 1, "prefix": f"10.160.{(64 * i) >> 8}.{(64 * i) & 255}/26"}
                for i in range(400)
            ],
        )
        for n, name in enumerate(names):
            dev = Device(
                name=name,
                mgmt_address="127.0.0.1",
                device_type="huawei",
                role=DeviceRole.EDGE_ROUTER,
                snmp_port=ports[n % len(ports)],
                snmp_community_enc=box.encrypt(name),
            )
            s.add(dev)
            s.flush()
            s.execute(
                insert(Link),
                [
                    {
                        "institution_id": i + 1,
                        "kind": LinkKind.LEASED_LINE,
                        "device_id": dev.id,
                        "interface": f"GigabitEthernet0/0/1.{1001 + i}",
                    }
                    for i in range(400)
                ],
            )


async def snmpbulkwalk_all(names: list[str], ports: list[int], concurrency: int) -> int:
    sem = asyncio.Semaphore(concurrency)
    env = {**os.environ, "MIBS": ""}

    async def run(*cmd: str) -> int:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
            )
            out, _ = await proc.communicate()
        return sum(
            1
            for line in out.decode("latin-1").splitlines()
            if line.startswith(".") and "No more variables" not in line
        )

    jobs = []
    for n, name in enumerate(names):
        target = f"127.0.0.1:{ports[n % len(ports)]}"
        base = ["-v2c", "-c", name, "-On", "-Oq", "-t2", "-r1"]
        jobs.append(run("snmpget", *base, target, "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0"))
        for oid in COLUMNS.values():
            jobs.append(run("snmpbulkwalk", *base, "-Cr25", target, dotted(oid)))
    return sum(await asyncio.gather(*jobs))


async def poll_all(targets: list[DeviceTarget], opts: PollOptions, concurrency: int) -> int:
    sem = asyncio.Semaphore(concurrency)

    async def one(t: DeviceTarget) -> int:
        async with sem:
            p = await poll_device(t, opts)
        if p.status != "ok":
            raise SystemExit(f"{t.name}: {p.status} {p.error}")
        return p.varbinds

    return sum(await asyncio.gather(*(one(t) for t in targets)))


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routers", type=int, default=50)
    ap.add_argument("--simulators", type=int, default=4)
    ap.add_argument("--pysnmp-routers", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ew-bench-snmp")
    args = ap.parse_args()
    os.environ.setdefault("EDGEWARDEN_SECRET_KEY", generate_key())
    settings = load_settings()
    conc = settings.snmp_concurrency
    opts = PollOptions(timeout=5.0, retries=1, max_repetitions=25, deadline=600)

    data = args.data_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    names = make_data(args.routers, data)
    print(
        f"{len(names)} routers (400 sub-interfaces, 3000 ARP) in {data}: "
        f"{time.perf_counter() - t0:.1f} s"
    )
    tmp = Path(tempfile.mkdtemp(prefix="ew-bench-snmp-"))
    try:
        with SnmpSimPool(
            data,
            processes=args.simulators,
            cache_dir=args.data_dir / "cache",
            probe_community=names[0],
        ) as pool:
            ports = pool.ports
            print(
                f"snmpsim x{len(ports)} ready after {time.perf_counter() - t0:.1f} s; "
                f"concurrency {conc}, max-repetitions 25"
            )
            targets = [
                DeviceTarget(n, "127.0.0.1", ports[i % len(ports)], community=n)
                for i, n in enumerate(names)
            ]
            asyncio.run(poll_all(targets[: len(ports)], opts, conc))  # warm up the agents

            c0, w0 = children_cpu(), time.perf_counter()
            base_vb = asyncio.run(snmpbulkwalk_all(names, ports, conc))
            base_wall, base_cpu = time.perf_counter() - w0, children_cpu() - c0

            url = f"sqlite:///{tmp / 'bench.db'}"
            make_db(url, names, ports)
            s = load_settings(snmp_timeout_s=5.0, snmp_device_deadline_s=600)
            c0, w0 = time.process_time(), time.perf_counter()
            result = asyncio.run(run_sweep(url, settings=s))
            sweep_wall, sweep_cpu = time.perf_counter() - w0, time.process_time() - c0
            bad = [(d.name, d.status, d.error) for d in result.failed]
            if bad:
                raise SystemExit(f"sweep failed on {bad}")

            c0, w0 = time.process_time(), time.perf_counter()
            again = asyncio.run(run_sweep(url, settings=s))  # history exists: updates
            again_wall, again_cpu = time.perf_counter() - w0, time.process_time() - c0

            c0, w0 = time.process_time(), time.perf_counter()
            poll_vb = asyncio.run(poll_all(targets, opts, conc))
            poll_wall, poll_cpu = time.perf_counter() - w0, time.process_time() - c0

            ref = [
                DeviceTarget(t.name, t.host, t.port, community=t.community, use_pysnmp=True)
                for t in targets[: args.pysnmp_routers]
            ]
            c0 = time.process_time()
            ref_vb = asyncio.run(poll_all(ref, opts, conc)) if ref else 0
            ref_cpu = time.process_time() - c0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def us(cpu: float, vb: int) -> float:
        return cpu / vb * 1e6 if vb else float("nan")

    sweep_us = us(sweep_cpu, result.varbinds)
    print()
    print(f"{'':34} {'varbinds':>9} {'CPU s':>7} {'µs/vb':>7} {'wall s':>7}")
    print(
        f"{'snmpbulkwalk (baseline)':34} {base_vb:>9} {base_cpu:>7.2f} "
        f"{us(base_cpu, base_vb):>7.1f} {base_wall:>7.2f}"
    )
    print(
        f"{'ours: run_sweep (poll + database)':34} {result.varbinds:>9} {sweep_cpu:>7.2f} "
        f"{sweep_us:>7.1f} {sweep_wall:>7.2f}"
    )
    print(
        f"{'ours: run_sweep again (updates)':34} {again.varbinds:>9} {again_cpu:>7.2f} "
        f"{us(again_cpu, again.varbinds):>7.1f} {again_wall:>7.2f}"
    )
    print(
        f"{'ours: poll only (fast v2c codec)':34} {poll_vb:>9} {poll_cpu:>7.2f} "
        f"{us(poll_cpu, poll_vb):>7.1f} {poll_wall:>7.2f}"
    )
    if ref:
        print(
            f"{f'stock pysnmp poll ({len(ref)} routers)':34} {ref_vb:>9} {ref_cpu:>7.2f} "
            f"{us(ref_cpu, ref_vb):>7.1f} {'':>7}"
        )
    ratio = sweep_wall / base_wall
    print()
    print(
        f"CPU per varbind, sweep: {sweep_us:.1f} µs (target ≤ {TARGET_US_PER_VARBIND:.0f}): "
        f"{'met' if sweep_us <= TARGET_US_PER_VARBIND else 'MISSED'}"
    )
    print(
        f"wall, sweep / snmpbulkwalk: {ratio:.2f}x (target ≤ {TARGET_WALL_RATIO:.0f}x): "
        f"{'met' if ratio <= TARGET_WALL_RATIO else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
