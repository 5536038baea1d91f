"""Cut, verify and restore against the VRP and Comware emulator (lab/sshemu) through netmiko's
own ``huawei`` and ``hp_comware`` drivers, and every fault case the issue names: each ends
verified, or failed-and-retryable, never done-but-unverified and never applied twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db import make_engine
from core.models import ActionKind, ActionState, AuditEvent, IpAllocation, LinkKind, LinkState
from enforcer import control, queue
from enforcer.worker import Worker
from lab.sshemu import EmulatedDevice, Emulator, Faults, start
from tests.enforcer.world import World, settings_for

PASSWORD = "Emu-S3cret!"
IFACE = "GigabitEthernet0/0/1.1001"
UPLINK = "GigabitEthernet0/0/0"
PROFILES = ["huawei", "hp_comware"]


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emu(profile: str) -> Iterator[Emulator]:
    device = EmulatedDevice(
        "EDGE1",
        profile,  # type: ignore[arg-type]
        interfaces=[UPLINK, "GigabitEthernet0/0/1", IFACE, "GigabitEthernet0/0/1.1002"],
        username="ops",
        password=PASSWORD,
    )
    emulator = start([device])
    try:
        yield emulator
    finally:
        emulator.stop()


def _worker(world: World, **kw: Any) -> Worker:
    settings = settings_for(world.url, enforcement_ssh_timeout_s=kw.pop("timeout", 5.0))
    return Worker(world.url, name="w-test", settings=settings, backoff_base_s=0.0, **kw)


def _device(world: World, emu: Emulator, profile: str, password: str = PASSWORD) -> Any:
    return world.device(
        "EDGE1", profile, emu.ports["EDGE1"], uplinks=[UPLINK], username="ops", password=password
    )


def test_cut_verify_restore_interface(world_sqlite: World, emu: Emulator, profile: str) -> None:
    world = world_sqlite
    link = world.link(_device(world, emu, profile), IFACE)
    cut = world.action(link)
    report = _worker(world).run_once()
    assert [(o.action_id, o.state) for o in report.outcomes] == [(cut.id, ActionState.VERIFIED)]
    state = emu.state("EDGE1")
    assert state.admin_up[IFACE] is False and state.admin_up[UPLINK] is True
    assert state.admin_up["GigabitEthernet0/0/1.1002"] is True
    assert state.saved and state.save_count == 1
    assert state.commands.count("shutdown") == 1
    fresh = world.reload(cut)
    assert fresh.link.state == LinkState.CUT
    assert fresh.commands == [f"interface {IFACE}", "shutdown", "quit"]
    assert fresh.target["interface"] == IFACE and fresh.target["device"] == "EDGE1"
    assert f"interface {IFACE}" in (fresh.backup or "")
    marker = "*down" if profile == "huawei" else "ADM"
    assert marker in (fresh.verification or "")
    assert PASSWORD not in (fresh.transcript or "") and "> shutdown" in (fresh.transcript or "")
    audit = world.audit_actions(cut.id)
    assert audit[0] == "enforcement.claimed" and audit[-1] == "enforcement.verified"
    assert audit.count("enforcement.batch") == 4  # backup, apply, save, verify
    assert "enforcement.verification" in audit
    audit_text = json.dumps([e.data for e in world.session.scalars(select(AuditEvent))])
    assert PASSWORD not in audit_text and "> shutdown" not in audit_text

    restore = world.action(link, ActionKind.RESTORE)
    report = _worker(world).run_once()
    assert [o.state for o in report.outcomes] == [ActionState.VERIFIED]
    assert emu.state("EDGE1").admin_up[IFACE] is True
    assert world.reload(restore).link.state == LinkState.UP
    assert world.reload(restore).commands[1] == "undo shutdown"


def test_cut_and_restore_vpdn_by_blackhole(
    world_sqlite: World, emu: Emulator, profile: str
) -> None:
    world = world_sqlite
    dev = _device(world, emu, profile)
    link = world.link(dev, None, kind=LinkKind.VPDN, prefixes=["10.88.1.0/24", "10.88.2.0/26"])
    cut = world.action(link)
    assert _worker(world).run_once().outcomes[0].state == ActionState.VERIFIED
    assert emu.state("EDGE1").blackholes == {"10.88.1.0/24", "10.88.2.0/26"}
    assert world.reload(cut).target["method"] == "block_prefixes"
    # The allocation changes after the cut: the restore still undoes exactly what was blocked.
    world.session.execute(delete(IpAllocation).where(IpAllocation.prefix == "10.88.2.0/26"))
    world.session.add(IpAllocation(institution_id=link.institution_id, prefix="10.88.3.0/24"))
    world.session.commit()
    restore = world.action(link, ActionKind.RESTORE)
    assert _worker(world).run_once().outcomes[0].state == ActionState.VERIFIED
    assert emu.state("EDGE1").blackholes == set()
    assert world.reload(restore).target["prefixes"] == ["10.88.1.0/24", "10.88.2.0/26"]
    assert world.reload(restore).link.state == LinkState.UP


def test_wrong_password_fails_permanently(world_sqlite: World, emu: Emulator, profile: str) -> None:
    world = world_sqlite
    action = world.action(world.link(_device(world, emu, profile, "wrong"), IFACE))
    outcome = _worker(world).run_once().outcomes[0]
    fresh = world.reload(action)
    assert outcome.state == ActionState.FAILED == fresh.state
    assert "authentication" in (fresh.last_error or "") and fresh.attempts == 1
    assert "wrong" not in (fresh.transcript or "")
    assert emu.state("EDGE1").admin_up[IFACE] is True
    # Not retried by itself ...
    assert _worker(world).run_once().claimed == 0
    # ... only by a person's retry (after the password was fixed).
    queue.retry(world.session, action.id, "alice", "password fixed")
    world.session.commit()
    assert world.reload(action).state == ActionState.APPROVED


def test_rejected_command_restores_backup(world_sqlite: World, emu: Emulator, profile: str) -> None:
    world = world_sqlite
    dev = _device(world, emu, profile)
    link = world.link(dev, None, kind=LinkKind.VPDN, prefixes=["10.66.1.0/24", "10.66.2.0/24"])
    emu.set_faults("EDGE1", Faults(reject=[r"route-static 10\.66\.2\.0"]))
    action = world.action(link)
    outcome = _worker(world).run_once().outcomes[0]
    fresh = world.reload(action)
    assert outcome.state == ActionState.FAILED == fresh.state
    assert "backup restored" in (fresh.last_error or "")
    state = emu.state("EDGE1")
    # The first route was applied, then taken away again by the rollback.
    assert state.blackholes == set()
    assert any(c.startswith("undo ip route-static 10.66.1.0") for c in state.commands)
    assert fresh.link.state == LinkState.UP
    assert "rollback" in (fresh.transcript or "")
    # Retryable: once the device accepts the commands, a person's retry completes it.
    emu.set_faults("EDGE1", Faults())
    queue.retry(world.session, action.id, "alice")
    world.session.commit()
    assert _worker(world).run_once().outcomes[0].state == ActionState.VERIFIED
    assert emu.state("EDGE1").blackholes == {"10.66.1.0/24", "10.66.2.0/24"}


def test_rejected_shutdown_puts_interface_state_back(
    world_sqlite: World, emu: Emulator, profile: str
) -> None:
    world = world_sqlite
    emu.set_faults("EDGE1", Faults(reject=[r"^shutdown$"]))
    action = world.action(world.link(_device(world, emu, profile), IFACE))
    assert _worker(world).run_once().outcomes[0].state == ActionState.FAILED
    state = emu.state("EDGE1")
    # The device re-read after the rejection shows the backup's state: nothing to roll back.
    assert state.admin_up[IFACE] is True and "undo shutdown" not in state.commands
    assert "device unchanged" in (world.reload(action).last_error or "")


def test_verification_still_up_is_a_failure(
    world_sqlite: World, emu: Emulator, profile: str
) -> None:
    world = world_sqlite
    emu.set_faults("EDGE1", Faults(stuck_up={IFACE}))
    action = world.action(world.link(_device(world, emu, profile), IFACE))
    outcome = _worker(world).run_once().outcomes[0]
    fresh = world.reload(action)
    assert outcome.state == ActionState.FAILED == fresh.state
    assert "still up" in (fresh.last_error or "")
    assert fresh.link.state == LinkState.UP  # never marked cut unverified
    assert "enforcement.verified" not in world.audit_actions(action.id)
    emu.set_faults("EDGE1", Faults())
    queue.retry(world.session, action.id, "alice")
    world.session.commit()
    assert _worker(world).run_once().outcomes[0].state == ActionState.VERIFIED
    assert world.reload(action).link.state == LinkState.CUT


def test_device_hanging_mid_session_is_retried_once(
    world_sqlite: World, emu: Emulator, profile: str
) -> None:
    world = world_sqlite
    emu.set_faults("EDGE1", Faults(hang_on=r"^shutdown$"))
    action = world.action(world.link(_device(world, emu, profile), IFACE))
    outcome = _worker(world, timeout=1.5).run_once().outcomes[0]
    fresh = world.reload(action)
    assert outcome.state == ActionState.APPROVED == fresh.state  # transient: retried later
    assert fresh.attempts == 1 and "stopped answering" in (fresh.last_error or "")
    assert fresh.link.state == LinkState.UP
    emu.set_faults("EDGE1", Faults())
    outcome = _worker(world).run_once().outcomes[0]
    fresh = world.reload(action)
    assert outcome.state == ActionState.VERIFIED and fresh.attempts == 2
    state = emu.state("EDGE1")
    assert state.admin_up[IFACE] is False
    # The retry read the device first (pre-check) before applying.
    assert "pre-check" not in (fresh.transcript or "") or "verify" in (fresh.transcript or "")


def test_kill_switch_between_backup_and_apply(
    world_sqlite: World, emu: Emulator, profile: str
) -> None:
    world = world_sqlite
    engine = make_engine(world.url)

    def pause_now(step: str, action_id: int) -> None:
        if step == "after_backup":
            with Session(engine) as s:
                control.pause(s, "alice", "stop everything")
                s.commit()

    action = world.action(world.link(_device(world, emu, profile), IFACE))
    try:
        outcome = _worker(world, on_step=pause_now).run_once().outcomes[0]
    finally:
        engine.dispose()
    fresh = world.reload(action)
    assert outcome.state == ActionState.APPROVED == fresh.state
    assert fresh.attempts == 0 and "kill switch" in (fresh.last_error or "")
    state = emu.state("EDGE1")
    assert "shutdown" not in state.commands and state.admin_up[IFACE] is True
    assert "enforcement.handed_back" in world.audit_actions(action.id)
    assert _worker(world).run_once().paused
