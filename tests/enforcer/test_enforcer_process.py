"""The `edgewarden enforcement ...` commands as real processes: the kill switch, approve,
dry-run, list, and the worker killed with SIGKILL mid-action and started again (reconcile),
or stopped with SIGTERM (exit 0, nothing left executing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from core.models import ActionState, EnforcementAction, LinkState
from lab.sshemu import EmulatedDevice, Emulator, Faults, start
from tests.enforcer.world import World

IFACE = "GigabitEthernet0/0/1.1001"
PASSWORD = "Emu-S3cret!"


def _env(world: World, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "EDGEWARDEN_DATABASE_URL": world.url,
            "EDGEWARDEN_ENFORCEMENT_POLL_S": "0.1",
            "EDGEWARDEN_ENFORCEMENT_SSH_TIMEOUT_S": "5",
        }
    )
    env.update(extra)
    return env


def _cli(world: World, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core", "enforcement", *args],
        env=_env(world, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wait(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    device = EmulatedDevice(
        "EDGE9",
        "huawei",
        interfaces=["GigabitEthernet0/0/0", "GigabitEthernet0/0/1", IFACE],
        username="ops",
        password=PASSWORD,
    )
    emulator = start([device])
    try:
        yield emulator
    finally:
        emulator.stop()


def test_cli_pause_status_resume(world_sqlite: World) -> None:
    world = world_sqlite
    paused = _cli(world, "pause", "--reason", "wrong prefix list", "--actor", "alice")
    assert paused.returncode == 0, paused.stderr
    assert "PAUSED" in paused.stdout and "wrong prefix list" in paused.stdout
    status = _cli(world, "status")
    assert "PAUSED" in status.stdout and "circuit breaker: closed" in status.stdout
    resumed = _cli(world, "resume", "--actor", "alice")
    assert resumed.returncode == 0 and "enforcement: running" in resumed.stdout
    assert world.audit_actions()[-2:] == ["enforcement.paused", "enforcement.resumed"]
    missing = _cli(world, "pause")
    assert missing.returncode != 0  # --reason is required


def test_cli_approve_dry_run_list(world_sqlite: World) -> None:
    world = world_sqlite
    dev = world.device(uplinks=["GigabitEthernet0/0/0"])
    action = world.action(world.link(dev, IFACE), state=ActionState.PROPOSED)
    dry = _cli(world, "dry-run", str(action.id))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [f"interface {IFACE}", "shutdown", "quit"]
    approved = _cli(world, "approve", str(action.id), "--actor", "alice")
    assert approved.returncode == 0 and "approved by alice" in approved.stdout
    listing = _cli(world, "list", "--state", "approved")
    assert f"{action.id}\tapproved\tcut\tapprove" in listing.stdout
    again = _cli(world, "approve", str(action.id), "--actor", "bob")
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: action {action.id} is approved, not proposed"
    uplink = world.action(world.link(dev, "GigabitEthernet0/0/0"), state=ActionState.PROPOSED)
    refused = _cli(world, "dry-run", str(uplink.id))
    assert refused.returncode == 2 and "uplink" in refused.stderr
    assert _cli(world, "approve", "999999", "--actor", "a").returncode == 2


def _worker_proc(world: World, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "enforcement", "worker", "--name", "crashy", *args],
        env=_env(world, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _state(world: World, action: EnforcementAction) -> EnforcementAction:
    return world.reload(action)


@pytest.mark.slow
def test_sigkill_between_apply_and_verify_then_reconcile(
    world_sqlite: World, emu: Emulator
) -> None:
    world = world_sqlite
    dev = world.device("EDGE9", "huawei", emu.ports["EDGE9"], username="ops", password=PASSWORD)
    action = world.action(world.link(dev, IFACE))
    # The device applies and saves the shutdown, then hangs on the verification read.
    emu.set_faults("EDGE9", Faults(hang_on=r"^display interface brief$"))
    proc = _worker_proc(world, EDGEWARDEN_ENFORCEMENT_SSH_TIMEOUT_S="60")
    try:
        _wait(
            lambda: "display interface brief" in emu.state("EDGE9").commands,
            60,
            "the worker never reached verification",
        )
        assert emu.state("EDGE9").admin_up[IFACE] is False
        assert _state(world, action).state == ActionState.EXECUTING
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    fresh = _state(world, action)
    assert fresh.state == ActionState.EXECUTING and fresh.link.state == LinkState.UP
    emu.set_faults("EDGE9", Faults())
    again = _cli(world, "worker", "--name", "crashy", "--once")
    assert again.returncode == 0, again.stderr
    fresh = _state(world, action)
    assert fresh.state == ActionState.VERIFIED, (fresh.last_error, again.stdout)
    assert fresh.attempts == 1 and fresh.link.state == LinkState.CUT
    assert "reconciliation" in (fresh.transcript or "")
    commands = emu.state("EDGE9").commands
    assert commands.count("shutdown") == 1, "reconciliation must not apply the cut again"


@pytest.mark.slow
def test_sigkill_before_apply_then_applied_once(world_sqlite: World, emu: Emulator) -> None:
    world = world_sqlite
    dev = world.device("EDGE9", "huawei", emu.ports["EDGE9"], username="ops", password=PASSWORD)
    action = world.action(world.link(dev, IFACE))
    emu.set_faults("EDGE9", Faults(hang_on=r"^display current-configuration interface"))
    proc = _worker_proc(world, EDGEWARDEN_ENFORCEMENT_SSH_TIMEOUT_S="60")
    try:
        _wait(
            lambda: any(c.startswith("display current") for c in emu.state("EDGE9").commands),
            60,
            "the worker never reached the backup",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _state(world, action).state == ActionState.EXECUTING
    emu.set_faults("EDGE9", Faults())
    again = _cli(world, "worker", "--name", "crashy", "--once")
    assert again.returncode == 0, again.stderr
    fresh = _state(world, action)
    assert fresh.state == ActionState.VERIFIED, (fresh.last_error, again.stdout)
    assert fresh.attempts == 2
    assert emu.state("EDGE9").commands.count("shutdown") == 1
    assert emu.state("EDGE9").admin_up[IFACE] is False


@pytest.mark.slow
def test_sigterm_stops_the_worker_cleanly(world_sqlite: World, emu: Emulator) -> None:
    world = world_sqlite
    dev = world.device("EDGE9", "huawei", emu.ports["EDGE9"], username="ops", password=PASSWORD)
    emu.set_faults("EDGE9", Faults(hang_on=r"^display current-configuration interface"))
    action = world.action(world.link(dev, IFACE))
    proc = _worker_proc(world, EDGEWARDEN_ENFORCEMENT_SSH_TIMEOUT_S="3")
    try:
        _wait(
            lambda: any(c.startswith("display current") for c in emu.state("EDGE9").commands),
            60,
            "the worker never reached the backup",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    fresh = _state(world, action)
    # Handed back (or scheduled for retry) without touching the device; nothing left running.
    assert fresh.state == ActionState.APPROVED
    assert "shutdown" not in emu.state("EDGE9").commands
