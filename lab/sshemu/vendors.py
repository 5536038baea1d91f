"""The two vendors' wording: prompts, messages, errors and how configuration is displayed.

Everything here is text a real VRP or Comware device prints; the command interpreter
(``cli.py``) is shared and asks the vendor how to say things. netmiko matches on some of
this text (``]``/``>`` ends a prompt, ``continue?`` starts the save dialogue), so messages
other than prompts never contain ``]`` or ``>`` unless the real device's do too."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, ClassVar

from lab.sshemu.model import Profile

if TYPE_CHECKING:
    from lab.sshemu.model import DeviceConfig

NL = "\r\n"


class Vendor:
    """Wording shared by both vendors; subclasses override what differs."""

    profile: Profile
    paging: tuple[str, ...]
    paging_reply: str
    system_view_reply: str
    first_rule = 5
    filter_word: str
    route_indent = ""  # Comware indents static routes in its configuration
    known_types: tuple[str, ...] = (
        "GigabitEthernet",
        "Ethernet",
        "LoopBack",
        "Serial",
        "Virtual-Template",
        "Dialer",
        "Tunnel",
    )
    type_aliases: ClassVar[dict[str, str]] = {"ge": "GigabitEthernet"}

    def banner(self) -> str:
        raise NotImplementedError

    def error(self, kind: str) -> str:
        """One of 'Unrecognized command', 'Wrong parameter', 'Incomplete command',
        'Too many parameters', 'Ambiguous command'."""
        raise NotImplementedError

    def fail(self, text: str) -> str:
        """A semantic error (the command parsed but cannot be done)."""
        raise NotImplementedError

    def acl_view(self, number: int) -> str:
        raise NotImplementedError

    def acl_header(self, number: int) -> str:
        raise NotImplementedError

    def route_line(self, net: ipaddress.IPv4Network) -> str:
        raise NotImplementedError

    def filter_line(self, direction: str, acl: int) -> str:
        raise NotImplementedError

    def route_lines(self, cfg: DeviceConfig) -> list[str]:
        """The static-route block (IPv4 then IPv6), with its closing ``#``, or nothing."""
        lines = [self.route_line(net) for net in sorted(cfg.routes)]
        lines += [
            f"{self.route_indent}ipv6 route-static {net.network_address} {net.prefixlen} NULL0"
            for net in sorted(cfg.routes6)
        ]
        return [*lines, "#"] if lines else []

    def render(self, cfg: DeviceConfig) -> str:
        raise NotImplementedError

    def interface_block(self, cfg: DeviceConfig, ifname: str) -> list[str]:
        lines = [f"interface {ifname}"]
        if ifname in cfg.descriptions:
            lines.append(f" description {cfg.descriptions[ifname]}")
        if not cfg.admin_up[ifname]:
            lines.append(" shutdown")
        for direction, acl in sorted(cfg.filters.get(ifname, {}).items()):
            lines.append(self.filter_line(direction, acl))
        return lines

    def acl_block(self, cfg: DeviceConfig, number: int) -> list[str]:
        rules = cfg.acls[number]
        return [self.acl_header(number)] + [f" {rules[n].render()}" for n in sorted(rules)]

    def interface_config(self, cfg: DeviceConfig, ifname: str) -> str:
        return NL.join(["#", *self.interface_block(cfg, ifname), "#", "return"])

    def brief(self, cfg: DeviceConfig) -> str:
        raise NotImplementedError

    def interface_detail(self, cfg: DeviceConfig, ifname: str) -> str:
        raise NotImplementedError

    def display_acl(self, cfg: DeviceConfig, number: int) -> str:
        raise NotImplementedError

    def routing_table(self, routes: list[ipaddress.IPv4Network]) -> str:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def save_question(self) -> str:
        raise NotImplementedError

    def save_done(self) -> str:
        raise NotImplementedError

    @staticmethod
    def phy(cfg: DeviceConfig, ifname: str) -> str:
        """'admin' (shut here), 'down' (parent shut) or 'up'."""
        if not cfg.admin_up[ifname]:
            return "admin"
        parent = ifname.split(".", 1)[0]
        if parent != ifname and not cfg.admin_up.get(parent, True):
            return "down"
        return "up"


class Huawei(Vendor):
    """Huawei VRP 5 (AR/NE routers) wording."""

    profile: Profile = "huawei"
    paging = ("screen-length", "0", "temporary")
    paging_reply = (
        "Info: The configuration takes effect on the current user terminal interface only."
    )
    system_view_reply = "Enter system view, return user view with Ctrl+Z."
    first_rule = 5
    filter_word = "traffic-filter"
    known_types = (
        *Vendor.known_types,
        "XGigabitEthernet",
        "25GE",
        "40GE",
        "100GE",
        "Eth-Trunk",
        "Vlanif",
    )

    def banner(self) -> str:
        return NL.join(
            [
                "",
                "Info: The max number of VTY users is 10, and the number",
                "      of current VTY users on line is 1.",
                "      The current login time is 2024-05-01 09:00:00+08:00.",
                "",
            ]
        )

    def error(self, kind: str) -> str:
        return f"Error: {kind} found at '^' position."

    def fail(self, text: str) -> str:
        return f"Error: {text}"

    def acl_view(self, number: int) -> str:
        return f"acl-{'basic' if number < 3000 else 'adv'}-{number}"

    def acl_header(self, number: int) -> str:
        return f"acl number {number}"

    def route_line(self, net: ipaddress.IPv4Network) -> str:
        return f"ip route-static {net.network_address} {net.netmask} NULL0"

    def filter_line(self, direction: str, acl: int) -> str:
        return f" traffic-filter {direction} acl {acl}"

    def render(self, cfg: DeviceConfig) -> str:
        lines = ["!Software Version V200R010C10SPC700", "#", f" sysname {cfg.sysname}", "#"]
        for number in sorted(cfg.acls):
            lines += [*self.acl_block(cfg, number), "#"]
        for ifname in cfg.interfaces:
            lines += [*self.interface_block(cfg, ifname), "#"]
        lines += ["interface NULL0", "#"]
        lines += self.route_lines(cfg)
        lines.append("return")
        return NL.join(lines)

    def brief(self, cfg: DeviceConfig) -> str:
        head = [
            "PHY: Physical",
            "*down: administratively down",
            "^down: standby",
            "(l): loopback",
            "(s): spoofing",
            "(E): E-Trunk down",
            "(b): BFD down",
            "(e): ETHOAM down",
            "(d): Dampening Suppressed",
            "InUti/OutUti: input utility/output utility",
            f"{'Interface':<28}{'PHY':<6}{'Protocol':<10}InUti OutUti   inErrors  outErrors",
        ]
        rows = []
        for ifname in cfg.interfaces:
            state = self.phy(cfg, ifname)
            phy = {"admin": "*down", "down": "down", "up": "up"}[state]
            proto = "up" if state == "up" else "down"
            rows.append(f"{ifname:<28}{phy:<6}{proto:<10}   0%     0%          0          0")
        rows.append(f"{'NULL0':<28}{'up':<6}{'up(s)':<10}   0%     0%          0          0")
        return NL.join(head + rows)

    def interface_detail(self, cfg: DeviceConfig, ifname: str) -> str:
        state = self.phy(cfg, ifname)
        current = {"admin": "Administratively DOWN", "down": "DOWN", "up": "UP"}[state]
        return NL.join(
            [
                f"{ifname} current state : {current}",
                f"Line protocol current state : {'UP' if state == 'up' else 'DOWN'}",
                f"Description:{cfg.descriptions.get(ifname, '')}",
                "Route Port,The Maximum Transmit Unit is 1500",
            ]
        )

    def display_acl(self, cfg: DeviceConfig, number: int) -> str:
        rules = cfg.acls[number]
        kind = "Basic" if number < 3000 else "Advanced"
        plural = "rule" if len(rules) == 1 else "rules"
        lines = [f"{kind} ACL {number}, {len(rules)} {plural}", "Acl's step is 5"]
        lines += [f" {rules[n].render()}" for n in sorted(rules)]
        return NL.join(lines)

    def routing_table(self, routes: list[ipaddress.IPv4Network]) -> str:
        lines = [
            "Route Flags: R - relay, D - download to fib",
            "-" * 78,
            "Routing Tables: Public",
            f"         Destinations : {len(routes)}        Routes : {len(routes)}",
            "",
            "Destination/Mask    Proto   Pre  Cost      Flags NextHop         Interface",
            "",
        ]
        lines += [
            f"{net!s:>17}   Static  60   0           D   0.0.0.0         NULL0" for net in routes
        ]
        return NL.join(lines)

    def version(self) -> str:
        return NL.join(
            [
                "Huawei Versatile Routing Platform Software",
                "VRP (R) software, Version 5.160 (AR2200 V200R010C10SPC700)",
                "Copyright (C) 2011-2019 HUAWEI TECH CO., LTD",
            ]
        )

    def save_question(self) -> str:
        return NL.join(
            [
                "  The current configuration will be written to the device.",
                "  Are you sure to continue?[Y/N]",
            ]
        )

    def save_done(self) -> str:
        return NL.join(
            [
                "  It will take several minutes to save configuration file, please wait.........",
                "  Configuration file had been saved successfully",
                "  Note: The configuration file will take effect after being activated",
            ]
        )


COMWARE_ABBREVIATIONS = {
    "GigabitEthernet": "GE",
    "Ten-GigabitEthernet": "XGE",
    "FortyGigE": "FGE",
    "HundredGigE": "HGE",
    "Bridge-Aggregation": "BAGG",
    "Route-Aggregation": "RAGG",
    "Vlan-interface": "Vlan",
    "LoopBack": "Loop",
}


class Comware(Vendor):
    """H3C Comware 7 (MSR/SR routers) wording."""

    profile: Profile = "hp_comware"
    paging = ("screen-length", "disable")
    paging_reply = ""
    system_view_reply = "System View: return to User View with Ctrl+Z."
    first_rule = 0
    filter_word = "packet-filter"
    route_indent = " "
    known_types = (
        *Vendor.known_types,
        "Ten-GigabitEthernet",
        "FortyGigE",
        "HundredGigE",
        "Bridge-Aggregation",
        "Route-Aggregation",
        "Vlan-interface",
    )
    type_aliases: ClassVar[dict[str, str]] = {
        abbr.lower(): full for full, abbr in COMWARE_ABBREVIATIONS.items()
    }

    def banner(self) -> str:
        return NL.join(
            [
                "",
                "*" * 78,
                "* Copyright (c) 2004-2021 New H3C Technologies Co., Ltd. All rights reserved.*",
                "* Without the owner's prior written consent,                                 *",
                "* no decompiling or reverse-engineering shall be allowed.                    *",
                "*" * 78,
                "",
                "",
            ]
        )

    def error(self, kind: str) -> str:
        return f" % {kind} found at '^' position."

    def fail(self, text: str) -> str:
        return text

    def acl_view(self, number: int) -> str:
        return f"acl-ipv4-{'basic' if number < 3000 else 'adv'}-{number}"

    def acl_header(self, number: int) -> str:
        return f"acl {'basic' if number < 3000 else 'advanced'} {number}"

    def route_line(self, net: ipaddress.IPv4Network) -> str:
        return f" ip route-static {net.network_address} {net.prefixlen} NULL0"

    def filter_line(self, direction: str, acl: int) -> str:
        return f" packet-filter {acl} {direction}"

    def render(self, cfg: DeviceConfig) -> str:
        lines = ["#", " version 7.1.064, Release 0821P11", "#", f" sysname {cfg.sysname}", "#"]
        lines += ["interface NULL0", "#"]
        for ifname in cfg.interfaces:
            lines += [*self.interface_block(cfg, ifname), "#"]
        lines += self.route_lines(cfg)
        for number in sorted(cfg.acls):
            lines += [*self.acl_block(cfg, number), "#"]
        lines.append("return")
        return NL.join(lines)

    @staticmethod
    def short(ifname: str) -> str:
        for full, abbr in COMWARE_ABBREVIATIONS.items():
            if ifname.startswith(full):
                return abbr + ifname[len(full) :]
        return ifname

    def brief(self, cfg: DeviceConfig) -> str:
        head = [
            "Brief information on interfaces in route mode:",
            "Link: ADM - administratively down; Stby - standby",
            "Protocol: (s) - spoofing",
            "Interface            Link Protocol Primary IP      Description",
        ]
        rows = [f"{'NULL0':<21}{'UP':<5}{'UP(s)':<9}--"]
        for ifname in cfg.interfaces:
            state = self.phy(cfg, ifname)
            link = {"admin": "ADM", "down": "DOWN", "up": "UP"}[state]
            proto = "UP" if state == "up" else "DOWN"
            desc = cfg.descriptions.get(ifname, "")
            rows.append(f"{self.short(ifname):<21}{link:<5}{proto:<9}{'--':<16}{desc}".rstrip())
        return NL.join(head + rows)

    def interface_detail(self, cfg: DeviceConfig, ifname: str) -> str:
        state = self.phy(cfg, ifname)
        current = {"admin": "Administratively DOWN", "down": "DOWN", "up": "UP"}[state]
        return NL.join(
            [
                ifname,
                f"Current state: {current}",
                f"Line protocol state: {'UP' if state == 'up' else 'DOWN'}",
                f"Description: {cfg.descriptions.get(ifname, ifname + ' Interface')}",
                "Maximum transmission unit: 1500",
            ]
        )

    def display_acl(self, cfg: DeviceConfig, number: int) -> str:
        rules = cfg.acls[number]
        kind = "Basic" if number < 3000 else "Advanced"
        plural = "rule" if len(rules) == 1 else "rules"
        lines = [f"{kind} IPv4 ACL {number}, {len(rules)} {plural},", "ACL's step is 5"]
        lines += [f" {rules[n].render()}" for n in sorted(rules)]
        return NL.join(lines)

    def routing_table(self, routes: list[ipaddress.IPv4Network]) -> str:
        lines = [
            "",
            f"Destinations : {len(routes)}        Routes : {len(routes)}",
            "",
            "Destination/Mask   Proto   Pre Cost        NextHop         Interface",
        ]
        lines += [f"{net!s:<19}Static  60  0           0.0.0.0         NULL0" for net in routes]
        return NL.join(lines)

    def version(self) -> str:
        return NL.join(
            [
                "H3C Comware Software, Version 7.1.064, Release 0821P11",
                "Copyright (c) 2004-2021 New H3C Technologies Co., Ltd. All rights reserved.",
                "H3C MSR3620 uptime is 0 weeks, 0 days, 1 hour, 0 minutes",
            ]
        )

    def save_question(self) -> str:
        return "The current configuration will be written to the device. Are you sure? [Y/N]:"

    def save_done(self) -> str:
        return NL.join(
            [
                "Validating file. Please wait...",
                "Saved the current configuration to mainboard device successfully.",
            ]
        )


VENDORS: dict[str, Vendor] = {"huawei": Huawei(), "hp_comware": Comware()}
