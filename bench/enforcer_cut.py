"""Enforcer benchmark: approved → verified on the lab's VRP emulator, next to bare netmiko.

    uv run python bench/enforcer_cut.py [--cuts 50] [--devices 20] [--profile huawei]

1. Baseline, same device, same session shape: netmiko connect + the cut's configuration
   commands + one ``display interface brief``, timed per cut. Two variants: netmiko's defaults
   (``send_config_set`` enters/leaves system-view by waiting for two seconds of silence) and the
   tuned sequence the driver uses (explicit prompts). The service is compared with the tuned
   one, the stricter baseline.
2. Service: ``--cuts`` actions approved one after another on that device, each run by
   ``Worker.run_once``; time from ``approved_at`` to ``finished_at`` (the verified row), p50/p95.
   Target: ≤ 1.2 × the tuned baseline's p50.
   The same again with the worker running as in production (``Worker.run``: full passes every
   ``enforcement_poll_s``, a wake-up query in between), approvals arriving at random moments,
   so that noticing an approval is part of the time ("loop").
3. Parallel: one action on each of ``--devices`` devices approved at once, one pass; time from
   approval to the last verified row. Target: ≤ 2 × the single cut's p50.

The emulator runs as its own process (``python -m lab.sshemu``) so that its event loop does not
share a GIL with the worker's threads; the database is a SQLite file in a temp directory."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from netmiko import ConnectHandler
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("EDGEWARDEN_SECRET_KEY", "ZWRnZXdhcmRlbi10ZXN0LWtleS0wMTIzNDU2Nzg5YWI=")

from core.crypto import secret_box
from core.db import make_engine
from core.migrate import upgrade
from core.models import (
    ActionKind,
    ActionMode,
    ActionState,
    County,
    Device,
    DeviceRole,
    EnforcementAction,
    Institution,
    InstitutionKind,
    Link,
    LinkKind,
)
from core.settings import load_settings
from core.timeutil import utcnow
from enforcer.worker import Worker

USER, PASSWORD = "bench", "Bench-Pw1"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_emulator(tmp: Path, profile: str, cuts: int, devices: int) -> tuple[Any, dict[str, int]]:
    subs = [f"GigabitEthernet0/0/1.{1000 + i}" for i in range(cuts)]
    base = [f"GigabitEthernet0/0/2.{2000 + i}" for i in range(cuts)]
    looped = [f"GigabitEthernet0/0/3.{3000 + i}" for i in range(cuts)]
    spec = {
        "devices": [
            {
                "name": "BENCH0",
                "profile": profile,
                "interfaces": [
                    "GigabitEthernet0/0/1",
                    "GigabitEthernet0/0/2",
                    "GigabitEthernet0/0/3",
                    *subs,
                    *base,
                    *looped,
                ],
                "username": USER,
                "password": PASSWORD,
            }
        ]
        + [
            {
                "name": f"PAR{i:02d}",
                "profile": profile,
                "interfaces": ["GigabitEthernet0/0/1", "GigabitEthernet0/0/1.1001"],
                "username": USER,
                "password": PASSWORD,
            }
            for i in range(devices)
        ]
    }
    config = tmp / "emu.yaml"
    config.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.sshemu", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    ports: dict[str, int] = {}
    assert proc.stdout is not None
    while len(ports) < devices + 1:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited before it was ready")
        words = line.split()
        if words[:1] == ["ready"]:
            ports[words[1]] = int(words[2])
    return proc, ports


def baseline(
    profile: str, port: int, cuts: int, tuned: bool, same_work: bool = False, offset: int = 0
) -> list[float]:
    """Bare netmiko per cut; ``same_work`` adds the backup read and the save the service does."""
    times = []
    for i in range(cuts if tuned else min(cuts, 5)):
        iface = f"GigabitEthernet0/0/2.{2000 + (i + offset) % cuts}"
        t0 = time.perf_counter()
        conn = ConnectHandler(
            device_type=profile,
            host="127.0.0.1",
            port=port,
            username=USER,
            password=PASSWORD,
            **({"global_cmd_verify": True} if profile == "hp_comware" else {}),
        )
        commands = [f"interface {iface}", "shutdown", "quit"]
        if same_work:
            conn.send_command(f"display current-configuration interface {iface}")
        if tuned:
            conn.send_command("system-view", expect_string=r"\]\s*$")
            conn.send_config_set(commands, enter_config_mode=False, exit_config_mode=False)
            conn.send_command("return", expect_string=r">\s*$")
        else:
            conn.send_config_set(commands)
        if same_work:
            conn.save_config()
        out = conn.send_command("display interface brief")
        times.append(time.perf_counter() - t0)
        assert iface in out or iface.replace("GigabitEthernet", "GE") in out
        conn.write_channel("quit\n")
        conn.paramiko_cleanup()
    return times


def build(session: Session, ports: dict[str, int], cuts: int, devices: int) -> dict[str, Any]:
    box = secret_box()
    county = County(code="140599", name="bench")
    session.add(county)
    session.flush()

    def device(name: str) -> Device:
        dev = Device(
            name=name,
            mgmt_address="127.0.0.1",
            ssh_port=ports[name],
            device_type=args.profile,
            role=DeviceRole.EDGE_ROUTER,
            county_id=county.id,
            ssh_username=USER,
            ssh_password_enc=box.encrypt(PASSWORD),
            uplink_interfaces=["GigabitEthernet0/0/1"],
        )
        session.add(dev)
        session.flush()
        return dev

    def link(dev: Device, iface: str, n: int) -> Link:
        inst = Institution(
            code=f"H140599{n:05d}",
            name=f"bench {n}",
            kind=InstitutionKind.HOSPITAL,
            county_id=county.id,
        )
        session.add(inst)
        session.flush()
        ln = Link(
            institution_id=inst.id, kind=LinkKind.LEASED_LINE, device_id=dev.id, interface=iface
        )
        session.add(ln)
        session.flush()
        return ln

    main = device("BENCH0")
    serial = [link(main, f"GigabitEthernet0/0/1.{1000 + i}", i) for i in range(cuts)]
    looped = [link(main, f"GigabitEthernet0/0/3.{3000 + i}", 5000 + i) for i in range(cuts)]
    parallel = [
        link(device(f"PAR{i:02d}"), "GigabitEthernet0/0/1.1001", 1000 + i) for i in range(devices)
    ]
    session.commit()
    return {
        "serial": [x.id for x in serial],
        "looped": [x.id for x in looped],
        "parallel": [x.id for x in parallel],
    }


def approve(session: Session, link_ids: list[int]) -> list[int]:
    now = utcnow()
    actions = []
    for link_id in link_ids:
        link = session.get(Link, link_id)
        assert link is not None
        action = EnforcementAction(
            link_id=link.id,
            device_id=link.device_id,
            kind=ActionKind.CUT,
            mode=ActionMode.APPROVE,
            state=ActionState.APPROVED,
            reason="bench",
            requested_by="bench",
            approved_by="bench-operator",
            approved_at=now,
        )
        session.add(action)
        actions.append(action)
    session.commit()
    return [a.id for a in actions]


def latency(session: Session, ids: list[int]) -> list[float]:
    session.expire_all()
    out = []
    for action_id in ids:
        a = session.get(EnforcementAction, action_id)
        assert a is not None and a.state == ActionState.VERIFIED, (action_id, a and a.last_error)
        assert a.finished_at is not None and a.approved_at is not None
        out.append((a.finished_at - a.approved_at).total_seconds())
    return out


def through_loop(session: Session, worker: Worker, link_ids: list[int]) -> list[float]:
    """The worker running as in production (``Worker.run``: full passes every
    ``enforcement_poll_s``, wake-up query in between); each cut is approved while it idles, so
    the time includes noticing the approval."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    ids = []
    try:
        for link_id in link_ids:
            time.sleep(0.1 + 0.4 * random.random())  # approvals arrive at any point of a cycle
            (action_id,) = approve(session, [link_id])
            ids.append(action_id)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                session.expire_all()
                a = session.get(EnforcementAction, action_id)
                assert a is not None
                if a.state in (ActionState.VERIFIED, ActionState.FAILED):
                    break
                time.sleep(0.01)
    finally:
        stop.set()
        thread.join(timeout=30)
    return latency(session, ids)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ew-bench-") as tmpdir:
        tmp = Path(tmpdir)
        emu, ports = start_emulator(tmp, args.profile, args.cuts, args.devices)
        try:
            url = f"sqlite:///{tmp / 'bench.db'}"
            upgrade(url)
            engine = make_engine(url)
            settings = load_settings(
                database_url=url,
                enforcement_max_per_run=1000,
                enforcement_max_per_hour=10000,
                enforcement_max_per_device_hour=10000,
            )
            worker = Worker(url, name="bench", settings=settings)
            with Session(engine, expire_on_commit=False) as s:
                links = build(s, ports, args.cuts, args.devices)
                default = baseline(args.profile, ports["BENCH0"], args.cuts, tuned=False)
                tuned = baseline(args.profile, ports["BENCH0"], args.cuts, tuned=True)
                same = baseline(
                    args.profile, ports["BENCH0"], args.cuts, tuned=True, same_work=True
                )
                serial: list[float] = []
                for link_id in links["serial"]:
                    ids = approve(s, [link_id])
                    worker.run_once()
                    serial += latency(s, ids)
                looped = through_loop(
                    s, Worker(url, name="bench-loop", settings=settings), links["looped"]
                )
                t0 = time.perf_counter()
                ids = approve(s, links["parallel"])
                report = worker.run_once()
                wall = time.perf_counter() - t0
                par = latency(s, ids)
                if os.environ.get("EW_BENCH_DETAIL"):
                    for action_id in ids:
                        a = s.get(EnforcementAction, action_id)
                        assert a is not None and a.started_at and a.approved_at and a.finished_at
                        print(
                            f"  action {action_id}: claimed +"
                            f"{(a.started_at - a.approved_at).total_seconds():.3f} s, "
                            f"ran {(a.finished_at - a.started_at).total_seconds():.3f} s"
                        )
                assert len(report.outcomes) == args.devices
            engine.dispose()
        finally:
            emu.terminate()
            emu.wait(timeout=10)

    p50, p95 = statistics.median(serial), pct(serial, 0.95)
    b50, b95 = statistics.median(tuned), pct(tuned, 0.95)
    d50 = statistics.median(default)
    s50, s95 = statistics.median(same), pct(same, 0.95)
    l50, l95 = statistics.median(looped), pct(looped, 0.95)
    print(f"profile {args.profile}; {args.cuts} serial cuts on one device; {args.devices} devices")
    print(f"baseline netmiko defaults   connect+config+show: p50 {d50:.3f} s ({len(default)} runs)")
    print(f"baseline netmiko tuned      connect+config+show: p50 {b50:.3f} s  p95 {b95:.3f} s")
    print(f"baseline netmiko tuned + backup read + save:     p50 {s50:.3f} s  p95 {s95:.3f} s")
    print(
        f"service approved→verified (backup+apply+save+verify, audited): p50 {p50:.3f} s  "
        f"p95 {p95:.3f} s  → {p50 / b50:.2f}× tuned baseline (target ≤ 1.20), "
        f"{p50 / s50:.2f}× same-work baseline"
    )
    print(
        f"service through the running worker loop (wake-up included):  p50 {l50:.3f} s  "
        f"p95 {l95:.3f} s  → {l50 / b50:.2f}× tuned baseline, {l95 / b50:.2f}× at p95"
    )
    print(
        f"parallel: {args.devices} cuts on {args.devices} devices: last verified "
        f"{max(par):.3f} s after approval (pass wall {wall:.3f} s) → {max(par) / p50:.2f}× "
        "single cut p50 (target ≤ 2.00)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=int, default=50)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--profile", choices=["huawei", "hp_comware"], default="huawei")
    args = parser.parse_args()
    sys.exit(main())
