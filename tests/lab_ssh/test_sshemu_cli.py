"""The emulator's command interpreter, line by line, for both vendors (no SSH: fast).

Checks the wording and caret columns netmiko and the enforcer match on, the view changes,
the configuration each command leaves, the save dialogues and the injected faults."""

from __future__ import annotations

import pytest

from lab.sshemu.cli import CliSession
from lab.sshemu.model import DeviceConfig, EmulatedDevice, Faults
from lab.sshemu.server import EmulatorCore
from lab.sshemu.vendors import VENDORS

HW_SUB = "GigabitEthernet0/0/1.1001"
H3C_SUB = "GigabitEthernet1/0/1.1001"


def session(profile: str, faults: Faults | None = None, **kw: object) -> CliSession:
    sub = HW_SUB if profile == "huawei" else H3C_SUB
    dev = EmulatedDevice("R1", profile, [sub], faults=faults or Faults(), **kw)  # type: ignore[arg-type]
    vendor = VENDORS[profile]
    return CliSession(DeviceConfig(dev, vendor.render), vendor)


def run(s: CliSession, *lines: str) -> str:
    """Every line's reply, as the terminal shows it (prompt, echo, output)."""
    out = s.prompt()
    for line in lines:
        out += line + "\r\n" + s.handle(line)
    return out


def test_prompts_follow_views_on_both_vendors() -> None:
    hw = session("huawei")
    assert hw.greeting().endswith("<R1>")
    out = run(hw, "system-view", f"interface {HW_SUB}", "acl number 3001", "quit", "return")
    assert f"[R1-{HW_SUB}]acl number 3001\r\n[R1-acl-adv-3001]quit\r\n[R1]return\r\n<R1>" in out
    h3c = session("hp_comware")
    out = run(h3c, "system-view", "acl advanced 3001", "acl basic 2001")
    assert "System View: return to User View with Ctrl+Z.\r\n[R1]" in out
    assert out.endswith("[R1-acl-ipv4-adv-3001]acl basic 2001\r\n[R1-acl-ipv4-basic-2001]")
    assert h3c.ctrl_z().endswith("<R1>")


@pytest.mark.parametrize(("profile", "prefix"), [("huawei", "Error: "), ("hp_comware", " % ")])
def test_errors_carry_vendor_wording_and_a_caret_under_the_bad_token(
    profile: str, prefix: str
) -> None:
    s = session(profile)
    run(s, "system-view")
    # "[R1]" is 4 columns: the caret sits under the token's first character
    assert s.handle("frobnicate now") == (
        "    ^\r\n" + prefix + "Unrecognized command found at '^' position.\r\n[R1]"
    )
    assert s.handle("interface GigabitEthernet9/9/9") == (
        " " * 14 + "^\r\n" + prefix + "Wrong parameter found at '^' position.\r\n[R1]"
    )
    assert "Incomplete command found at '^' position." in s.handle("ip route-static 10.1.0.0")
    assert "Too many parameters found at '^' position." in s.handle("quit now")
    assert "Ambiguous command" in s.handle("s")  # save / sysname
    assert s.view == "system"
    state = s.cfg.snapshot()
    assert state.rejected == [
        "frobnicate now",
        "interface GigabitEthernet9/9/9",
        "ip route-static 10.1.0.0",
        "quit now",
        "s",
    ]
    assert state.running_config == state.saved_config  # nothing changed


def test_keywords_and_interface_names_may_be_abbreviated() -> None:
    s = session("huawei")
    out = run(s, "sys", "int g0/0/1.1001", "shut", "ret", "disp cur int GigabitEthernet 0/0/1.1001")
    assert "#\r\ninterface GigabitEthernet0/0/1.1001\r\n shutdown\r\n#\r\nreturn\r\n<R1>" in out
    assert s.cfg.snapshot().admin_up[HW_SUB] is False
    h3c = session("hp_comware")
    run(h3c, "sys", "interface GE1/0/1.1001", "shutdown")
    assert h3c.prompt() == f"[R1-{H3C_SUB}]"


def test_unknown_interface_is_rejected_and_sub_interfaces_need_not_be_created() -> None:
    s = session("huawei")
    run(s, "system-view")
    assert "Wrong parameter" in s.handle("interface GigabitEthernet0/0/1.1002")
    assert s.prompt() == "[R1]"
    s.handle("interface GigabitEthernet0/0/1")  # the parent of a listed sub-interface exists
    assert s.prompt() == "[R1-GigabitEthernet0/0/1]"


def test_brief_shows_admin_down_as_vendor_marks_and_parent_shutdown_as_down() -> None:
    hw = session("huawei")
    run(hw, "system-view", f"interface {HW_SUB}", "shutdown")
    brief = hw.handle("display interface brief")
    assert f"{HW_SUB:<28}*down down" in brief
    assert f"{'GigabitEthernet0/0/1':<28}up    up" in brief
    run(hw, "undo shutdown", "interface GigabitEthernet0/0/1", "shutdown")
    brief = hw.handle("display interface brief")
    assert f"{HW_SUB:<28}down  down" in brief  # the parent is shut, not the sub-interface
    h3c = session("hp_comware")
    run(h3c, "system-view", f"interface {H3C_SUB}", "shutdown")
    brief = h3c.handle("display interface brief")
    assert "GE1/0/1.1001         ADM  DOWN" in brief
    assert "GE1/0/1              UP   UP" in brief
    assert "Current state: Administratively DOWN" in h3c.handle(f"display interface {H3C_SUB}")


def test_huawei_acl_filter_and_blackhole_route_render_like_vrp() -> None:
    s = session("huawei")
    run(
        s,
        "system-view",
        "acl number 3001",
        "rule deny ip source 10.1.2.3 0.0.255.255",  # host bits dropped by the wildcard
        "rule deny ip source 10.2.0.0 0.0.255.255",
        "rule deny ip source 10.2.0.0 0.0.255.255",  # same rule again: no duplicate
        f"interface {HW_SUB}",  # from the ACL view, like VRP
        "traffic-filter inbound acl 3001",
        "ip route-static 10.1.0.0 255.255.0.0 NULL0",
        "ip route-static 10.3.0.0 16 NULL 0",
    )
    cfg = s.handle("display current-configuration")
    assert (
        "acl number 3001\r\n rule 5 deny ip source 10.1.0.0 0.0.255.255\r\n"
        " rule 10 deny ip source 10.2.0.0 0.0.255.255\r\n#" in cfg
    )
    assert f"interface {HW_SUB}\r\n traffic-filter inbound acl 3001\r\n#" in cfg
    assert (
        "ip route-static 10.1.0.0 255.255.0.0 NULL0\r\nip route-static 10.3.0.0 255.255.0.0 NULL0"
        in cfg
    )
    assert s.handle("display current-configuration | include route-static").startswith(
        "ip route-static 10.1.0.0 255.255.0.0 NULL0\r\nip route-static 10.3.0.0 255.255.0.0 NULL0\r\n["
    )
    assert "Advanced ACL 3001, 2 rules" in s.handle("display acl 3001")
    assert "10.1.0.0/16   Static" in s.handle("display ip routing-table 10.1.200.1")
    state = s.cfg.snapshot()
    assert state.blackholes == {"10.1.0.0/16", "10.3.0.0/16"}
    assert state.filters == {HW_SUB: {"inbound": 3001}}
    assert [r.render() for r in state.acls[3001]] == [
        "rule 5 deny ip source 10.1.0.0 0.0.255.255",
        "rule 10 deny ip source 10.2.0.0 0.0.255.255",
    ]
    assert state.saved is False
    out = run(
        s,
        f"interface {HW_SUB}",
        "undo traffic-filter inbound",
        "undo ip route-static 10.1.0.0 255.255.0.0 NULL0",
        "undo ip route-static 10.1.0.0 255.255.0.0 NULL0",
        "undo acl number 3001",
        "undo acl number 3001",
    )
    assert out.count("Error: The static route does not exist.") == 1
    assert out.count("Error: The ACL does not exist.") == 1
    state = s.cfg.snapshot()
    assert state.blackholes == {"10.3.0.0/16"} and not state.acls and not state.filters


def test_comware_acl_numbering_packet_filter_and_route_by_prefix_length() -> None:
    s = session("hp_comware")
    out = run(
        s,
        "system-view",
        "acl advanced 3001",
        "rule deny ip source 10.1.0.0 0.0.255.255",
        "rule permit ip",
        "undo rule 5",
        "undo rule 5",
        f"interface {H3C_SUB}",
        "traffic-filter inbound acl 3001",  # VRP syntax: Comware has packet-filter
        "packet-filter 3001 inbound",
        "ip route-static 10.1.0.0 255.255.0.0 NULL0",
    )
    assert out.count("The rule does not exist.") == 1
    assert " % Unrecognized command found at '^' position." in out
    cfg = s.handle("display current-configuration")
    assert "acl advanced 3001\r\n rule 0 deny ip source 10.1.0.0 0.0.255.255\r\n#" in cfg
    assert f"interface {H3C_SUB}\r\n packet-filter 3001 inbound\r\n#" in cfg
    assert " ip route-static 10.1.0.0 16 NULL0" in cfg
    run(s, f"int {H3C_SUB}", "undo packet-filter 3001 inbound", "undo ip route-static 10.1.0.0 16")
    assert not s.cfg.snapshot().filters and not s.cfg.snapshot().blackholes


def test_pipes_filter_display_output_only() -> None:
    s = session("huawei")
    run(s, "system-view", "ip route-static 10.1.0.0 16 NULL0")
    assert s.handle("display current-configuration | exclude #").count("#") == 0
    assert s.handle("display current-configuration | begin ip route").startswith("ip route-static")
    assert "Unrecognized command" in s.handle("sysname X | include y")
    assert s.prompt() == "[R1]"  # the bad line did nothing


def test_huawei_save_asks_and_only_yes_saves() -> None:
    s = session("huawei")
    run(s, "system-view", f"interface {HW_SUB}", "shutdown", "return")
    assert s.handle("save") == (
        "  The current configuration will be written to the device.\r\n"
        "  Are you sure to continue?[Y/N]"
    )
    assert "Save was canceled" in s.handle("n")
    assert s.cfg.snapshot().saved is False
    s.handle("save")
    out = s.handle("y")
    assert "saved successfully" in out and out.endswith("<R1>")
    state = s.cfg.snapshot()
    assert state.saved and state.save_count == 1 and " shutdown" in state.saved_config


def test_comware_save_dialogue_and_save_force() -> None:
    s = session("hp_comware")
    run(s, "system-view", f"interface {H3C_SUB}", "shutdown")
    assert s.handle("save").endswith("Are you sure? [Y/N]:")
    assert s.handle("y").startswith("Please input the file name(*.cfg)[flash:/startup.cfg]")
    assert s.handle("").endswith("flash:/startup.cfg exists, overwrite? [Y/N]:")
    out = s.handle("y")
    assert out.startswith("Validating file. Please wait...")
    assert out.endswith(f"[R1-{H3C_SUB}]")
    assert s.cfg.snapshot().saved
    s.handle("undo shutdown")
    assert not s.cfg.snapshot().saved
    assert "Saved the current configuration" in s.handle("save force")
    assert s.cfg.snapshot().saved and s.cfg.snapshot().save_count == 2


def test_faults_reject_stuck_up_and_hang() -> None:
    calls: list[tuple[str, bool]] = []
    faults = Faults(reject=[r"^ip route-static 10\.9\."], stuck_up={HW_SUB}, hang_on="display acl")
    s = session("huawei", faults, on_admin_change=lambda i, up: calls.append((i, up)))
    out = run(
        s, "system-view", "ip route-static 10.9.0.0 16 NULL0", f"interface {HW_SUB}", "shutdown"
    )
    assert "Error: Unrecognized command found at '^' position." in out
    assert s.cfg.snapshot().blackholes == set()
    assert s.cfg.snapshot().admin_up[HW_SUB] is True  # accepted, still up
    assert calls == []
    run(s, "interface GigabitEthernet0/0/1", "shutdown", "shutdown", "undo shutdown")
    assert calls == [("GigabitEthernet0/0/1", False), ("GigabitEthernet0/0/1", True)]
    assert s.handle("display acl 3001") == "" and s.hung
    assert s.cfg.snapshot().commands[-1] == "display acl 3001"


def test_snapshot_is_a_copy() -> None:
    s = session("huawei")
    before = s.cfg.snapshot()
    run(s, "system-view", f"interface {HW_SUB}", "shutdown")
    assert before.admin_up[HW_SUB] is True
    assert s.cfg.snapshot().admin_up[HW_SUB] is False


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        EmulatorCore([EmulatedDevice("A", "junos", ["ge-0/0/0"])])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate device names"):
        EmulatorCore([EmulatedDevice("A", "huawei", [HW_SUB])] * 2)
    with pytest.raises(ValueError, match="not an interface name"):
        EmulatorCore([EmulatedDevice("A", "huawei", ["uplink"])])


@pytest.mark.parametrize(("profile", "lead"), [("huawei", ""), ("hp_comware", " ")])
def test_ipv6_blackhole_routes(profile: str, lead: str) -> None:
    s = session(profile)
    out = run(
        s,
        "system-view",
        "ipv6 route-static 2001:db8:10:: 48 NULL0",
        "ipv6 route-static 2001:db8::1 129 NULL0",
    )
    assert out.count("Wrong parameter") == 1
    assert f"\r\n{lead}ipv6 route-static 2001:db8:10:: 48 NULL0\r\n" in s.handle(
        "display current-configuration"
    )
    assert s.cfg.snapshot().blackholes == {"2001:db8:10::/48"}
    assert "does not exist" in run(
        s,
        "undo ipv6 route-static 2001:db8:10:: 48 NULL0",
        "undo ipv6 route-static 2001:db8:10:: 48",
    )
    assert s.cfg.snapshot().blackholes == set()
