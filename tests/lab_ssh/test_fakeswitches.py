"""fake-switches (Cisco IOS model) in its own venv, driven by netmiko's ``cisco_ios`` driver
over real SSH: the launcher's fixes (enable secret, ``end``, sub-interfaces, Null0 routes,
IOS error wording) are what make these steps work."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import (
    ConfigInvalidException,
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
)

from lab.fakeswitches import CiscoSwitch, start_cisco

SUB = "GigabitEthernet0/1.1001"
ERRORS = r"% Invalid input|Error:|Unrecognized command"


@pytest.fixture(scope="module")
def switch() -> Iterator[CiscoSwitch]:
    with start_cisco("CS-EDGE-01", [SUB, "GigabitEthernet0/2"], secret="en4ble") as sw:
        yield sw


def _running(conn: ConnectHandler, ifname: str) -> str:
    return conn.send_command(f"show running-config interface {ifname}")


def test_cut_save_verify_and_restore_with_cisco_ios(switch: CiscoSwitch) -> None:
    conn = ConnectHandler(**switch.netmiko_params())
    try:
        conn.enable()  # needs the str secret fix
        assert conn.find_prompt() == "CS-EDGE-01#"
        out = conn.send_config_set(
            [
                f"interface {SUB}",
                "shutdown",
                "exit",
                "ip route 10.1.0.0 255.255.0.0 Null0",
                "ipv6 route 2001:db8:10::/48 Null0",
            ],
            cmd_verify=True,
            error_pattern=ERRORS,
        )
        assert out.rstrip().endswith("CS-EDGE-01#")  # left config mode with "end"
        assert "OK" in conn.save_config()
        assert f"interface {SUB}\n shutdown\nend" in _running(conn, SUB)
        assert " shutdown" not in _running(conn, "GigabitEthernet0/2")
        routes = conn.send_command("show running-config | include route")
        assert "ip route 10.1.0.0 255.255.0.0 Null0" in routes
        assert "ipv6 route 2001:db8:10::/48 Null0" in routes

        conn.send_config_set(
            [
                f"interface {SUB}",
                "no shutdown",
                "exit",
                "no ip route 10.1.0.0 255.255.0.0 Null0",
                "no ipv6 route 2001:db8:10::/48 Null0",
            ],
            cmd_verify=True,
            error_pattern=ERRORS,
        )
        assert "shutdown" not in _running(conn, SUB)
        routes = conn.send_command("show running-config | include route")
        assert "10.1.0.0" not in routes and "2001:db8:10::" not in routes
    finally:
        conn.disconnect()


def test_bad_commands_answer_ios_errors(switch: CiscoSwitch) -> None:
    conn = ConnectHandler(**switch.netmiko_params())
    try:
        conn.enable()
        with pytest.raises(ConfigInvalidException, match="% Invalid input"):
            conn.send_config_set(["frobnicate the router"], error_pattern=ERRORS)
        conn.send_command("end", expect_string="#")
        out = conn.send_config_set(["no ip route 10.99.0.0 255.255.0.0 Null0"])
        assert "%No matching route to delete" in out
        assert "Invalid input" in conn.send_command("show running-config interface Gi9/9")
    finally:
        conn.disconnect()


def test_wrong_password_and_wrong_secret_are_refused(switch: CiscoSwitch) -> None:
    with pytest.raises(NetmikoAuthenticationException):
        ConnectHandler(**(switch.netmiko_params() | {"password": "nope"}))
    conn = ConnectHandler(**(switch.netmiko_params() | {"secret": "nope"}))
    try:
        with pytest.raises(ValueError, match="enable mode"):
            conn.enable()
    finally:
        conn.disconnect()


def test_stop_ends_the_process_by_pid_and_closes_the_port() -> None:
    sw = start_cisco("CS-STOP", ["GigabitEthernet0/1"])
    params = sw.netmiko_params()
    assert sw.alive()
    sw.stop()
    assert not sw.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(sw.pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sw.port), timeout=1).close()
    with pytest.raises(NetmikoTimeoutException):
        ConnectHandler(**params)
