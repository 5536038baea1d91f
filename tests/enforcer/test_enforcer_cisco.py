"""Cut, verify and restore against fake-switches (Cisco IOS model) through netmiko
``cisco_ios``: enable with a secret, ``configure terminal``, ``write mem``, verification from
``show running-config interface X`` and blackhole routes from ``show running-config``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netmiko import ConnectHandler

from core.models import ActionKind, ActionState, LinkKind, LinkState
from enforcer.worker import Worker
from lab.fakeswitches import CiscoSwitch, start_cisco
from tests.enforcer.world import World, settings_for

PASSWORD, SECRET = "Cisco-Pw1", "En-S3cret"
IFACES = ["GigabitEthernet0/1", "GigabitEthernet0/1.1001", "GigabitEthernet0/1.1002"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def switch() -> Iterator[CiscoSwitch]:
    sw = start_cisco("CORE1", IFACES, username="ops", password=PASSWORD, secret=SECRET)
    try:
        yield sw
    finally:
        sw.stop()


def _running(switch: CiscoSwitch, command: str) -> str:
    """Read the switch independently of the enforcer (a second netmiko session)."""
    conn = ConnectHandler(**switch.netmiko_params())
    try:
        conn.enable()
        return str(conn.send_command(command))
    finally:
        conn.disconnect()


def _worker(world: World) -> Worker:
    return Worker(world.url, name="w-cisco", settings=settings_for(world.url), backoff_base_s=0)


def _device(world: World, switch: CiscoSwitch, password: str = PASSWORD) -> object:
    return world.device(
        "CORE1",
        "cisco_ios",
        switch.port,
        uplinks=["GigabitEthernet0/1"],
        username="ops",
        password=password,
        secret=SECRET,
    )


def test_cisco_cut_verify_restore(world_sqlite: World, switch: CiscoSwitch) -> None:
    world = world_sqlite
    link = world.link(_device(world, switch), "GigabitEthernet0/1.1001")  # type: ignore[arg-type]
    cut = world.action(link)
    outcome = _worker(world).run_once().outcomes[0]
    assert outcome.state == ActionState.VERIFIED, outcome.detail
    config = _running(switch, "show running-config interface GigabitEthernet0/1.1001")
    assert "\n shutdown" in config
    other = _running(switch, "show running-config interface GigabitEthernet0/1.1002")
    assert "shutdown" not in other
    fresh = world.reload(cut)
    assert fresh.link.state == LinkState.CUT
    assert fresh.commands == ["interface GigabitEthernet0/1.1001", "shutdown", "exit"]
    transcript = fresh.transcript or ""
    assert PASSWORD not in transcript and SECRET not in transcript
    assert "write mem" in transcript or "<save>" in transcript

    restore = world.action(link, ActionKind.RESTORE)
    assert _worker(world).run_once().outcomes[0].state == ActionState.VERIFIED
    assert "shutdown" not in _running(
        switch, "show running-config interface GigabitEthernet0/1.1001"
    )
    assert world.reload(restore).link.state == LinkState.UP


def test_cisco_blackhole_routes(world_sqlite: World, switch: CiscoSwitch) -> None:
    world = world_sqlite
    dev = _device(world, switch)
    link = world.link(dev, None, kind=LinkKind.VPDN, prefixes=["10.55.1.0/24"])  # type: ignore[arg-type]
    world.action(link)
    outcome = _worker(world).run_once().outcomes[0]
    assert outcome.state == ActionState.VERIFIED, outcome.detail
    assert "ip route 10.55.1.0 255.255.255.0" in _running(switch, "show running-config")
    world.action(link, ActionKind.RESTORE)
    outcome = _worker(world).run_once().outcomes[0]
    assert outcome.state == ActionState.VERIFIED, outcome.detail
    assert "10.55.1.0" not in _running(switch, "show running-config")


def test_cisco_wrong_password(world_sqlite: World, switch: CiscoSwitch) -> None:
    world = world_sqlite
    action = world.action(world.link(_device(world, switch, "nope"), "GigabitEthernet0/1.1002"))  # type: ignore[arg-type]
    outcome = _worker(world).run_once().outcomes[0]
    assert outcome.state == ActionState.FAILED
    assert "authentication" in (world.reload(action).last_error or "")
