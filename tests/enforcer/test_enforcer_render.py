"""Templates, target checks, verification parsing and sanitizing: no device, no database."""

from __future__ import annotations

import pytest

from core.models import ActionKind
from enforcer.drivers import available, get_driver
from enforcer.errors import TargetRefused, UnknownDriver
from enforcer.targets import (
    Target,
    canonical_interface,
    check_interface,
    check_prefixes,
)
from enforcer.transcript import MASK, Transcript, sanitize


def _target(device_type: str, **kw: object) -> Target:
    base: dict[str, object] = {
        "method": "shutdown_interface",
        "device": "edge-1",
        "device_type": device_type,
        "host": "127.0.0.1",
        "port": 22,
        "institution": "H14050200001",
        "protected": False,
        "link_id": 1,
        "link_kind": "leased_line",
        "interface": "GigabitEthernet0/0/1.1001",
    }
    base.update(kw)
    return Target(**base)  # type: ignore[arg-type]


def test_every_issue_vendor_has_a_driver() -> None:
    assert {"huawei", "hp_comware", "cisco_ios"} <= set(available())
    with pytest.raises(UnknownDriver, match="juniper"):
        get_driver("juniper")


@pytest.mark.parametrize(
    ("device_type", "cut", "restore"),
    [
        (
            "huawei",
            ["interface GigabitEthernet0/0/1.1001", "shutdown", "quit"],
            ["interface GigabitEthernet0/0/1.1001", "undo shutdown", "quit"],
        ),
        (
            "hp_comware",
            ["interface GigabitEthernet0/0/1.1001", "shutdown", "quit"],
            ["interface GigabitEthernet0/0/1.1001", "undo shutdown", "quit"],
        ),
        (
            "cisco_ios",
            ["interface GigabitEthernet0/0/1.1001", "shutdown", "exit"],
            ["interface GigabitEthernet0/0/1.1001", "no shutdown", "exit"],
        ),
    ],
)
def test_shutdown_templates(device_type: str, cut: list[str], restore: list[str]) -> None:
    driver = get_driver(device_type)
    target = _target(device_type)
    assert driver.render(ActionKind.CUT, target) == cut
    assert driver.render(ActionKind.RESTORE, target) == restore


def test_block_prefix_templates_per_vendor() -> None:
    prefixes = ("10.20.1.0/24", "10.20.2.0/28")
    vrp = get_driver("huawei").render(
        ActionKind.CUT,
        _target("huawei", method="block_prefixes", interface=None, prefixes=prefixes),
    )
    assert vrp == [
        "ip route-static 10.20.1.0 255.255.255.0 NULL0",
        "ip route-static 10.20.2.0 255.255.255.240 NULL0",
    ]
    comware = get_driver("hp_comware").render(
        ActionKind.RESTORE,
        _target("hp_comware", method="block_prefixes", interface=None, prefixes=prefixes),
    )
    assert comware == [
        "undo ip route-static 10.20.1.0 24 NULL0",
        "undo ip route-static 10.20.2.0 28 NULL0",
    ]
    cisco = get_driver("cisco_ios").render(
        ActionKind.CUT,
        _target(
            "cisco_ios", method="block_prefixes", interface=None, prefixes=("2001:db8:1::/48",)
        ),
    )
    assert cisco == ["ipv6 route 2001:db8:1::/48 Null0"]


def test_rollback_puts_back_what_the_backup_showed() -> None:
    vrp = get_driver("huawei")
    target = _target("huawei")
    up = "#\ninterface GigabitEthernet0/0/1.1001\n description x\n#\nreturn"
    down = "#\ninterface GigabitEthernet0/0/1.1001\n shutdown\n#\nreturn"
    assert vrp.rollback_commands(target, up, down) == [
        "interface GigabitEthernet0/0/1.1001",
        "undo shutdown",
        "quit",
    ]
    assert vrp.rollback_commands(target, down, up)[1] == "shutdown"
    assert vrp.rollback_commands(target, up, up) == []  # nothing changed, nothing sent
    blk = _target(
        "huawei",
        method="block_prefixes",
        interface=None,
        prefixes=("10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"),
    )
    before = "ip route-static 10.1.0.0 255.255.255.0 NULL0"
    now = "ip route-static 10.2.0.0 255.255.255.0 NULL0"
    assert vrp.rollback_commands(blk, before, now) == [
        "ip route-static 10.1.0.0 255.255.255.0 NULL0",
        "undo ip route-static 10.2.0.0 255.255.255.0 NULL0",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "GigabitEthernet0/0/*",
        "GigabitEthernet0/0/1-10",
        "GigabitEthernet0/0/1 to GigabitEthernet0/0/9",
        "GigabitEthernet0/0/1\nreboot",
        "all",
        "range Gi0/1 - 5",
        ".*",
    ],
)
def test_empty_and_wildcard_interfaces_are_refused(name: str) -> None:
    with pytest.raises(TargetRefused):
        check_interface(name, [])


def test_uplinks_are_refused_in_any_spelling() -> None:
    uplinks = ["GigabitEthernet0/0/0", "Eth-Trunk1.100"]
    for name in ("GigabitEthernet0/0/0", "GE0/0/0", "gigabitethernet0/0/0", "Eth-Trunk1"):
        with pytest.raises(TargetRefused, match="uplink"):
            check_interface(name, uplinks)
    # A sub-interface of an uplink is the institution's own; shutting it leaves the uplink up.
    assert check_interface("GigabitEthernet0/0/0.1001", uplinks) == "GigabitEthernet0/0/0.1001"
    assert canonical_interface("GE0/0/1.5") == "gigabitethernet0/0/1.5"


@pytest.mark.parametrize(
    ("prefixes", "match"),
    [
        ([], "empty"),
        (["0.0.0.0/0"], "wider"),
        (["10.0.0.0/8"], "wider"),
        (["::/0"], "wider"),
        (["10.1.1.1/24"], "host bits"),
        (["not-a-prefix"], "refusing"),
        (["127.0.0.0/24"], "device's own address"),
    ],
)
def test_empty_wide_and_self_prefixes_are_refused(prefixes: list[str], match: str) -> None:
    with pytest.raises(TargetRefused, match=match):
        check_prefixes(prefixes, "127.0.0.1")


def test_prefixes_are_normalised() -> None:
    assert check_prefixes(["10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24"], "192.0.2.1") == (
        "10.1.0.0/24",
        "10.2.0.0/24",
    )


def test_verification_parsers() -> None:
    vrp, comware, cisco = get_driver("huawei"), get_driver("hp_comware"), get_driver("cisco_ios")
    target = _target("huawei")
    brief_down = "Interface  PHY  Protocol\nGigabitEthernet0/0/1.1001   *down down  0% 0%"
    brief_up = "Interface  PHY  Protocol\nGigabitEthernet0/0/1.1001   up   up    0% 0%"
    assert vrp.check(ActionKind.CUT, target, brief_down).ok
    assert not vrp.check(ActionKind.CUT, target, brief_up).ok
    assert vrp.check(ActionKind.RESTORE, target, brief_up).ok
    assert not vrp.check(ActionKind.CUT, target, "Interface PHY\nGE0/0/2 *down down").ok
    assert not vrp.check(
        ActionKind.CUT, target, "Error: Unrecognized command found at '^' position."
    ).ok
    # Comware abbreviates and says ADM; its legend line must not be read as an interface.
    cw = "Link: ADM - administratively down; Stby - standby\nGE0/0/1.1001         ADM  DOWN     --"
    assert comware.check(ActionKind.CUT, _target("hp_comware"), cw).ok
    cw_up = (
        "Link: ADM - administratively down; Stby - standby\nGE0/0/1.1001         UP   UP       --"
    )
    assert not comware.check(ActionKind.CUT, _target("hp_comware"), cw_up).ok
    run = "Building configuration...\n!\ninterface GigabitEthernet0/0/1.1001\n shutdown\nend"
    assert cisco.check(ActionKind.CUT, _target("cisco_ios"), run).ok
    assert not cisco.check(ActionKind.CUT, _target("cisco_ios"), run.replace(" shutdown\n", "")).ok
    assert not cisco.check(
        ActionKind.CUT, _target("cisco_ios"), "% Invalid input detected at '^' marker."
    ).ok
    blk = _target("hp_comware", method="block_prefixes", interface=None, prefixes=("10.9.0.0/24",))
    assert comware.check(ActionKind.CUT, blk, " ip route-static 10.9.0.0 24 NULL0").ok
    assert not comware.check(ActionKind.CUT, blk, " ip route-static 10.9.0.0 24 10.0.0.1").ok
    assert comware.check(ActionKind.RESTORE, blk, "").ok


def test_transcripts_never_keep_secrets() -> None:
    t = Transcript(secrets=("S3cr3t!", "en4ble"))
    t.add("login", ["enable"], "Password: en4ble\nrouter#")
    t.add(
        "backup",
        ["display current-configuration"],
        " local-user admin password cipher %^%#abc\n snmp-agent community read public123",
    )
    text = t.render()
    assert "en4ble" not in text and "%^%#abc" not in text and "public123" not in text
    assert MASK in text
    assert sanitize("user pw S3cr3t! here", ("S3cr3t!",)) == f"user pw {MASK} here"
    # A short secret is masked as a token, not inside every word that contains its letters.
    assert sanitize("attempt p by pp", ("p",)) == f"attempt {MASK} by pp"
