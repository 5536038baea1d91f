"""netmiko's own ``huawei`` and ``hp_comware`` drivers, unchanged, against the emulator over
real SSH on loopback: cut, save, verify, restore, and each injected fault.

netmiko's huawei driver spends ~2 s in every ``check_config_mode`` (a timing read), so a
plain ``send_config_set`` costs ~9 s against any VRP device; the main flow uses it as the
enforcer will, and the fault tests enter system-view themselves to stay quick."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import paramiko
import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import (
    ConfigInvalidException,
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadTimeout,
)

from lab.sshemu import EmulatedDevice, Emulator, Faults, start

SUB = {"huawei": "GigabitEthernet0/0/1.1001", "hp_comware": "GigabitEthernet1/0/1.1001"}
ERRORS = r"Error:|% Unrecognized|Unrecognized command|% Invalid input"
CUT_ROUTE = "ip route-static 10.1.0.0 255.255.0.0 NULL0"


def _filter(profile: str, undo: bool = False) -> str:
    if profile == "huawei":
        return "undo traffic-filter inbound" if undo else "traffic-filter inbound acl 3001"
    return ("undo " if undo else "") + "packet-filter 3001 inbound"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    admin_changes: list[tuple[str, bool]] = []
    devices = [
        EmulatedDevice(
            "HZ-EDGE-01",
            "huawei",
            [SUB["huawei"], "GigabitEthernet0/0/2"],
            on_admin_change=lambda i, up: admin_changes.append((i, up)),
        ),
        EmulatedDevice("H3C-EDGE-01", "hp_comware", [SUB["hp_comware"]], password="s3cret!"),
        EmulatedDevice("HZ-FAULTY", "huawei", [SUB["huawei"]]),
        EmulatedDevice("H3C-FAULTY", "hp_comware", [SUB["hp_comware"]]),
    ]
    with start(devices) as emulator:
        emulator.admin_changes = admin_changes  # type: ignore[attr-defined]
        yield emulator


def _connect(emu: Emulator, name: str, **extra: object) -> ConnectHandler:
    return ConnectHandler(**emu.netmiko_params(name), fast_cli=False, **extra)


def _link(conn: ConnectHandler, profile: str, sub: str) -> str:
    """The sub-interface's PHY (VRP) or Link (Comware) column in ``display interface brief``."""
    name = sub if profile == "huawei" else sub.replace("GigabitEthernet", "GE")
    brief = conn.send_command("display interface brief")
    return next(ln.split()[1] for ln in brief.splitlines() if ln.split()[:1] == [name])


@pytest.mark.parametrize(
    ("name", "profile"),
    [pytest.param("HZ-EDGE-01", "huawei", marks=pytest.mark.slow), ("H3C-EDGE-01", "hp_comware")],
)
def test_cut_save_verify_and_restore_through_the_real_driver(
    emu: Emulator, name: str, profile: str
) -> None:
    sub = SUB[profile]
    # Comware's driver turns cmd_verify off by default (line wrapping on real devices); the
    # emulator never wraps, so switch it on to prove the echo is exact.
    conn = _connect(emu, name, global_cmd_verify=True if profile == "hp_comware" else None)
    try:
        assert conn.base_prompt == name
        cut = [
            f"interface {sub}",
            "shutdown",
            "quit",
            "acl number 3001",
            "rule deny ip source 10.1.0.0 0.0.255.255",
            "quit",
            f"interface {sub}",
            _filter(profile),
            "quit",
            CUT_ROUTE,
        ]
        out = conn.send_config_set(cut, cmd_verify=True, error_pattern=ERRORS)
        assert f"[{name}-{sub}]shutdown" in out
        assert out.rstrip().endswith(f"<{name}>")  # the driver left system-view again
        saved = conn.save_config()
        assert "successfully" in saved
        state = emu.state(name)
        assert state.saved and state.save_count == 1
        assert state.admin_up[sub] is False
        assert state.blackholes == {"10.1.0.0/16"}
        assert state.filters == {sub: {"inbound": 3001}}

        shown = conn.send_command(f"display current-configuration interface {sub}")
        assert f"interface {sub}\n shutdown\n" in shown
        assert "3001" in shown
        assert _link(conn, profile, sub) == ("*down" if profile == "huawei" else "ADM")
        routes = conn.send_command("display current-configuration | include route-static")
        assert "10.1.0.0" in routes and "NULL0" in routes
        assert "deny ip source 10.1.0.0 0.0.255.255" in conn.send_command("display acl 3001")

        restore = [
            f"interface {sub}",
            _filter(profile, undo=True),
            "undo shutdown",
            "quit",
            "undo acl number 3001",
            f"undo {CUT_ROUTE}",
        ]
        conn.send_config_set(restore, cmd_verify=True, error_pattern=ERRORS)
        assert "successfully" in conn.save_config()
        shown = conn.send_command(f"display current-configuration interface {sub}")
        assert "shutdown" not in shown and "3001" not in shown
        assert _link(conn, profile, sub) == ("up" if profile == "huawei" else "UP")
        assert "route-static" not in conn.send_command(
            "display current-configuration | include route-static"
        )
        state = emu.state(name)
        assert state.saved and state.save_count == 2
        assert state.admin_up[sub] and not state.blackholes and not state.acls and not state.filters
    finally:
        conn.disconnect()
    if profile == "huawei":
        assert emu.admin_changes == [(sub, False), (sub, True)]  # type: ignore[attr-defined]


def _fast(emu: Emulator, name: str) -> ConnectHandler:
    """A session in system-view, cmd_verify on for both drivers (no 2 s timing reads)."""
    conn = _connect(emu, name, global_cmd_verify=True)
    conn.send_command("system-view", expect_string=r"\]")
    return conn


@pytest.mark.parametrize(
    ("name", "profile"), [("HZ-FAULTY", "huawei"), ("H3C-FAULTY", "hp_comware")]
)
def test_a_rejected_command_raises_with_the_error_pattern(
    emu: Emulator, name: str, profile: str
) -> None:
    emu.set_faults(name, Faults(reject=[r"^shutdown$"]))
    conn = _fast(emu, name)
    try:
        cmds = [f"interface {SUB[profile]}", "shutdown"]
        with pytest.raises(ConfigInvalidException, match="command: shutdown, matched error"):
            conn.send_config_set(
                cmds, enter_config_mode=False, exit_config_mode=False, error_pattern=ERRORS
            )
        # without an error pattern the vendor's error is in the output
        out = conn.send_config_set(cmds, enter_config_mode=False, exit_config_mode=False)
        assert "Unrecognized command found at '^' position." in out
        assert emu.state(name).admin_up[SUB[profile]] is True
        assert emu.state(name).rejected[-1] == "shutdown"
    finally:
        conn.paramiko_cleanup()  # a graceful disconnect() costs netmiko 2-6 s of timing reads
        emu.set_faults(name, Faults())


@pytest.mark.parametrize(
    ("name", "profile"), [("HZ-FAULTY", "huawei"), ("H3C-FAULTY", "hp_comware")]
)
def test_stuck_up_accepts_shutdown_but_verification_shows_the_interface_up(
    emu: Emulator, name: str, profile: str
) -> None:
    sub = SUB[profile]
    emu.set_faults(name, Faults(stuck_up={sub}))
    conn = _fast(emu, name)
    try:
        out = conn.send_config_set(
            [f"interface {sub}", "shutdown", "return"],
            enter_config_mode=False,
            exit_config_mode=False,
            error_pattern=ERRORS,
        )
        assert "shutdown" in out
        shown = conn.send_command(f"display current-configuration interface {sub}")
        assert "shutdown" not in shown
        assert _link(conn, profile, sub) == ("up" if profile == "huawei" else "UP")
        assert emu.state(name).admin_up[sub] is True
    finally:
        conn.paramiko_cleanup()  # a graceful disconnect() costs netmiko 2-6 s of timing reads
        emu.set_faults(name, Faults())


def test_a_hung_session_makes_netmiko_time_out_within_its_read_timeout(emu: Emulator) -> None:
    emu.set_faults("HZ-FAULTY", Faults(hang_on=r"^display interface brief"))
    conn = _connect(emu, "HZ-FAULTY")
    try:
        t0 = time.monotonic()
        with pytest.raises(ReadTimeout):
            conn.send_command("display interface brief", read_timeout=2)
        assert time.monotonic() - t0 < 4
        conn.write_channel("display version\n")  # and it stays silent, not even an echo
        time.sleep(0.5)
        assert conn.read_channel() == ""
        assert emu.state("HZ-FAULTY").commands[-1] == "display interface brief"
    finally:
        emu.set_faults("HZ-FAULTY", Faults())
        conn.paramiko_cleanup()  # disconnect() would wait 10 s for the silent device
    # a new session to the same device answers again
    conn = _connect(emu, "HZ-FAULTY")
    assert "VRP" in conn.send_command("display version")
    conn.paramiko_cleanup()


@pytest.mark.parametrize("name", ["HZ-FAULTY", "H3C-FAULTY"])
def test_refused_login_and_wrong_password_are_authentication_failures(
    emu: Emulator, name: str
) -> None:
    emu.set_faults(name, Faults(refuse_login=True))
    try:
        with pytest.raises(NetmikoAuthenticationException):
            _connect(emu, name)
    finally:
        emu.set_faults(name, Faults())
    params = emu.netmiko_params(name) | {"password": "wrong"}
    with pytest.raises(NetmikoAuthenticationException):
        ConnectHandler(**params)


def test_a_closed_port_is_refused_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens after the close
    t0 = time.monotonic()
    with pytest.raises(NetmikoTimeoutException, match="TCP connection to device failed"):
        ConnectHandler(
            device_type="huawei", host="127.0.0.1", port=port, username="admin", password="admin"
        )
    assert time.monotonic() - t0 < 2


def test_a_stopped_emulator_refuses_connections_and_drops_sessions() -> None:
    emu = start([EmulatedDevice("STOPME", "huawei", [SUB["huawei"]])])
    params = emu.netmiko_params("STOPME")
    conn = ConnectHandler(**params)
    emu.stop()
    with pytest.raises(OSError):
        conn.send_command("display version", read_timeout=2)
    with pytest.raises(NetmikoTimeoutException):
        ConnectHandler(**params)


def test_sessions_to_one_device_share_its_configuration(emu: Emulator) -> None:
    a = _connect(emu, "H3C-FAULTY", global_cmd_verify=True)
    b = _connect(emu, "H3C-FAULTY", global_cmd_verify=True)
    try:
        sub = SUB["hp_comware"]
        a.send_config_set([f"interface {sub}", "description cut-test"], error_pattern=ERRORS)
        assert "description cut-test" in b.send_command(
            f"display current-configuration interface {sub}"
        )
        a.send_config_set([f"interface {sub}", "undo description"], error_pattern=ERRORS)
        assert "description" not in b.send_command(f"display current-configuration interface {sub}")
    finally:
        a.disconnect()
        b.disconnect()


def test_an_exec_request_runs_one_command_in_user_view(emu: Emulator) -> None:
    params = emu.netmiko_params("HZ-FAULTY")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        params["host"],
        port=params["port"],
        username="admin",
        password="admin",
        look_for_keys=False,
        allow_agent=False,
    )
    try:
        _, stdout, _ = client.exec_command("display version")
        out = stdout.read().decode()
        assert out.startswith("Huawei Versatile Routing Platform Software")
        assert "<HZ-FAULTY>" not in out
        assert stdout.channel.recv_exit_status() == 0
    finally:
        client.close()
