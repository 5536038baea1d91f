"""What an emulated VRP/Comware device is (its declaration) and what it holds (its state).

The declaration (`EmulatedDevice`, `Faults`) is what tests and the demo write; the state
(`DeviceConfig`) is the device's running configuration, shared by every SSH session to the
device like on a real router, and guarded by a lock because tests read it from another
thread while the emulator's event loop changes it."""

from __future__ import annotations

import copy
import ipaddress
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Profile = Literal["huawei", "hp_comware"]
PROFILES: tuple[Profile, ...] = ("huawei", "hp_comware")


@dataclass
class Faults:
    """Misbehaviour to inject, so the enforcer's failure paths meet a device that misbehaves.

    reject: regexes (``re.search`` on the stripped command line) answered with the vendor's
    "Unrecognized command" error and not executed. stuck_up: interfaces whose ``shutdown`` is
    accepted but leaves them up. hang_on: regex of a command after which the session echoes
    nothing and answers nothing more. refuse_login: every password is refused."""

    reject: list[str] = field(default_factory=list)
    stuck_up: set[str] = field(default_factory=set)
    hang_on: str | None = None
    refuse_login: bool = False

    def rejects(self, line: str) -> bool:
        return any(re.search(p, line) for p in self.reject)

    def hangs(self, line: str) -> bool:
        return self.hang_on is not None and re.search(self.hang_on, line) is not None


@dataclass
class EmulatedDevice:
    """One emulated router: its name (the prompt), profile, interfaces and credentials.

    ``on_admin_change(ifname, admin_up)`` runs on the emulator's thread after an interface's
    admin state changed (the namespace tests use it to take a veth down); keep it short."""

    name: str
    profile: Profile
    interfaces: list[str]
    username: str = "admin"
    password: str = "admin"
    port: int = 0
    faults: Faults = field(default_factory=Faults)
    on_admin_change: Callable[[str, bool], None] | None = None


@dataclass(frozen=True)
class AclRule:
    """One ``rule`` line of an ACL; source/destination are (address, wildcard) or None (any)."""

    number: int
    action: Literal["deny", "permit"]
    protocol: str | None  # "ip" in advanced ACLs, None in basic ones
    source: tuple[str, str] | None = None
    destination: tuple[str, str] | None = None

    def render(self) -> str:
        parts = [f"rule {self.number} {self.action}"]
        if self.protocol:
            parts.append(self.protocol)
        for word, ep in (("source", self.source), ("destination", self.destination)):
            if ep is not None:
                parts.append(f"{word} {ep[0]} {ep[1]}")
        return " ".join(parts)


@dataclass
class DeviceState:
    """A snapshot of one device for tests: nothing in it changes after it is returned.

    ``blackholes`` holds the NULL0 static routes (IPv4 and IPv6) as CIDR strings;
    ``filters`` maps an interface to {direction: ACL number}; ``saved`` is True when the
    running configuration equals the last saved one (``saved_config``); ``commands`` lists
    every line received in order (also rejected ones; none after a hang), ``rejected`` the
    ones answered with an error."""

    name: str
    profile: Profile
    sysname: str
    admin_up: dict[str, bool]
    descriptions: dict[str, str]
    acls: dict[int, list[AclRule]]
    filters: dict[str, dict[str, int]]
    blackholes: set[str]
    running_config: str
    saved_config: str
    saved: bool
    save_count: int
    commands: list[str]
    rejected: list[str]


_IFNAME = re.compile(r"^(.*?[A-Za-z-])(\d[\d/:.]*)$")


def split_ifname(name: str) -> tuple[str, str]:
    """('GigabitEthernet', '0/0/1.1001') for 'GigabitEthernet0/0/1.1001'; ValueError if odd."""
    m = _IFNAME.match(name)
    if not m:
        raise ValueError(f"not an interface name: {name!r}")
    return m.group(1), m.group(2)


def parent_of(name: str) -> str | None:
    """The main interface of a sub-interface (before the dot), else None."""
    kind, number = split_ifname(name)
    return f"{kind}{number.split('.', 1)[0]}" if "." in number else None


class DeviceConfig:
    """The running configuration of one device and its saved copy.

    Mutations happen on the emulator's event loop; ``snapshot`` may run on any thread."""

    def __init__(self, device: EmulatedDevice, render: Callable[[DeviceConfig], str]) -> None:
        self.device = device
        self.lock = threading.RLock()
        self.sysname = device.name
        self.faults = copy.deepcopy(device.faults)
        ordered: list[str] = []
        for name in device.interfaces:
            split_ifname(name)  # validates
            parent = parent_of(name)
            if parent and parent not in ordered:
                ordered.append(parent)
            if name not in ordered:
                ordered.append(name)
        self.interfaces = ordered
        self.admin_up: dict[str, bool] = dict.fromkeys(ordered, True)
        self.descriptions: dict[str, str] = {}
        self.acls: dict[int, dict[int, AclRule]] = {}
        self.filters: dict[str, dict[str, int]] = {}
        self.routes: dict[ipaddress.IPv4Network, str] = {}  # prefix -> "NULL0"
        self.routes6: dict[ipaddress.IPv6Network, str] = {}
        self.commands: list[str] = []
        self.rejected: list[str] = []
        self.save_count = 0
        self._render = render
        self.saved_config = render(self)
        self.listeners: list[Callable[[DeviceConfig], None]] = []

    def running_config(self) -> str:
        with self.lock:
            return self._render(self)

    def changed(self) -> None:
        for listener in self.listeners:
            listener(self)

    def save(self) -> None:
        with self.lock:
            self.saved_config = self._render(self)
            self.save_count += 1
        self.changed()

    def set_admin(self, ifname: str, up: bool) -> None:
        """Apply (undo) shutdown; a stuck_up interface ignores shutdown silently."""
        if not up and ifname in self.faults.stuck_up:
            return
        with self.lock:
            before = self.admin_up[ifname]
            self.admin_up[ifname] = up
        if before != up and self.device.on_admin_change is not None:
            self.device.on_admin_change(ifname, up)
        self.changed()

    def snapshot(self) -> DeviceState:
        with self.lock:
            running = self._render(self)
            return DeviceState(
                name=self.device.name,
                profile=self.device.profile,
                sysname=self.sysname,
                admin_up=dict(self.admin_up),
                descriptions=dict(self.descriptions),
                acls={n: [r for _, r in sorted(rules.items())] for n, rules in self.acls.items()},
                filters={k: dict(v) for k, v in self.filters.items() if v},
                blackholes={str(p) for p in self.routes} | {str(p) for p in self.routes6},
                running_config=running,
                saved_config=self.saved_config,
                saved=running == self.saved_config,
                save_count=self.save_count,
                commands=list(self.commands),
                rejected=list(self.rejected),
            )
