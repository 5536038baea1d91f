"""The latency work of issue #6: the worker notices an approval between its full passes, and the
VRP/Comware driver reads by prompt (echo first), never by silence or fixed sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from netmiko.exceptions import ReadTimeout

from core.models import ActionState
from enforcer.channel import exchange, prompt_patterns
from enforcer.drivers import get_driver
from enforcer.worker import Worker
from lab.sshemu import EmulatedDevice, Emulator, Faults, start
from tests.enforcer.world import World, settings_for

IFACE = "GigabitEthernet0/0/1.1001"


@pytest.fixture(params=["huawei", "hp_comware"])
def emu(request: pytest.FixtureRequest) -> Iterator[tuple[str, Emulator]]:
    profile = str(request.param)
    device = EmulatedDevice(
        "LAT-1",
        profile,  # type: ignore[arg-type]
        interfaces=["GigabitEthernet0/0/1", IFACE],
        username="ops",
        password="pw",
        faults=Faults(hang_on="display version"),
    )
    emulator = start([device])
    try:
        yield profile, emulator
    finally:
        emulator.stop()


def _connect(profile: str, emulator: Emulator) -> object:
    params = {
        "device_type": profile,
        "host": "127.0.0.1",
        "port": emulator.ports["LAT-1"],
        "username": "ops",
        "password": "pw",
        "allow_agent": False,
        "use_keys": False,
        "ssh_config_file": None,
    }
    return get_driver(profile).connect(params, 5.0)


def test_exchange_waits_for_echo_then_prompt(emu: tuple[str, Emulator]) -> None:
    profile, emulator = emu
    conn = _connect(profile, emulator)
    try:
        assert conn.base_prompt == "LAT-1"  # type: ignore[attr-defined]
        user, system, either = prompt_patterns("LAT-1")
        # A stale prompt in front of the echo must not end the read early.
        conn.write_channel("\n")  # type: ignore[attr-defined]
        out = exchange(conn, f"display current-configuration interface {IFACE}", either, 5.0)
        assert out.startswith("#") and f"interface {IFACE}" in out and out.endswith("<LAT-1>")
        assert exchange(conn, "system-view", system, 5.0).rstrip().endswith("[LAT-1]")
        out = exchange(conn, f"interface {IFACE}", either, 5.0)
        assert out.rstrip().endswith(f"[LAT-1-{IFACE}]")
        assert exchange(conn, "return", user, 5.0).rstrip().endswith("<LAT-1>")
        assert emulator.state("LAT-1").admin_up[IFACE] is True
        # A device that stops answering is a read timeout (a transient failure), not a hang.
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            exchange(conn, "display version", either, 0.5)
        assert time.monotonic() - started < 2.0
    finally:
        conn.paramiko_cleanup()  # type: ignore[attr-defined]


def test_prompt_patterns_need_the_device_name_at_a_line_start() -> None:
    user, system, either = prompt_patterns("R1")
    assert user.search("x\n<R1>") and not user.search("x<R1>") and not user.search("\n<R2>")
    assert system.search("\n[R1-GigabitEthernet0/0/1.1001]") and system.search("\n[R1]")
    # The save question ends in "[Y/N]" but is not a prompt.
    assert not either.search("\n  Are you sure to continue?[Y/N]")
    assert not system.search("\n[R10]")


def test_worker_wakes_on_a_new_approval_between_passes(world_sqlite: World) -> None:
    world = world_sqlite
    device = EmulatedDevice(
        "LAT-2", "huawei", interfaces=["GigabitEthernet0/0/1", IFACE], username="ops", password="pw"
    )
    emulator = start([device])
    try:
        dev = world.device(
            "LAT-2",
            "huawei",
            emulator.ports["LAT-2"],
            uplinks=["GigabitEthernet0/0/1"],
            username="ops",
            password="pw",
        )
        link = world.link(dev, IFACE)
        # Full passes only every 10 s: only the wake-up query can start the cut in time.
        settings = settings_for(world.url, enforcement_poll_s=10.0)
        worker = Worker(world.url, name="w-wake", settings=settings, wake_s=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            time.sleep(0.3)  # the first (empty) pass is over; the loop now waits
            action = world.action(link)
            deadline = time.monotonic() + 3.0
            state = ActionState.APPROVED
            while time.monotonic() < deadline and state != ActionState.VERIFIED:
                time.sleep(0.02)
                state = world.reload(action).state
            assert state == ActionState.VERIFIED
            assert emulator.state("LAT-2").admin_up[IFACE] is False
        finally:
            stop.set()
            thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        emulator.stop()
