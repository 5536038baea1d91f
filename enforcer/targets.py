"""Resolve what an action touches, and refuse what must never be touched.

The resolved target is snapshotted into ``EnforcementAction.target`` so that the audit trail
shows what was meant even after the inventory changes, and so that a restore undoes exactly
what its cut did. Names and prefixes are checked strictly here because they are pasted into
device commands: a newline or a wildcard in an inventory field must not become a command."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import (
    ActionKind,
    ActionState,
    EnforcementAction,
    Institution,
    IpAllocation,
    LinkKind,
)
from enforcer.errors import TargetRefused

SHUTDOWN_INTERFACE = "shutdown_interface"
BLOCK_PREFIXES = "block_prefixes"
METHODS = (SHUTDOWN_INTERFACE, BLOCK_PREFIXES)

# A single interface: letters, then slot/port numbers, optionally a sub-interface (.1001) or a
# channel (:1). No spaces, ranges, wildcards or anything a CLI would read as a second command.
_INTERFACE_RE = re.compile(r"^[A-Za-z][A-Za-z-]{0,40}\d+(?:/\d+){0,4}(?:\.\d+)?(?::\d+)?$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Blackholing anything wider than this would cut far more than one institution (a wrong prefix
# list must not cut a county).
MIN_PREFIXLEN = {4: 16, 6: 32}

# Vendor abbreviations, so that "GE0/0/1" and "GigabitEthernet0/0/1" compare equal.
_ABBREVIATIONS = (
    ("xgigabitethernet", ("xge", "xgigabitethernet")),
    ("ten-gigabitethernet", ("xge", "tengigabitethernet", "te")),
    ("tengigabitethernet", ("te", "ten-gigabitethernet", "xge")),
    ("gigabitethernet", ("ge", "gi", "gig")),
    ("fastethernet", ("fa", "fe")),
    ("ethernet", ("eth", "et")),
    ("eth-trunk", ("eth-trunk",)),
    ("port-channel", ("po",)),
    ("bridge-aggregation", ("bagg",)),
    ("route-aggregation", ("ragg",)),
)


def canonical_interface(name: str) -> str:
    """Lower-case full name: ``GE0/0/1.10`` → ``gigabitethernet0/0/1.10``."""
    lowered = name.strip().lower().replace(" ", "")
    match = re.match(r"^([a-z-]+)(.*)$", lowered)
    if not match:
        return lowered
    word, rest = match.groups()
    for full, shorts in _ABBREVIATIONS:
        if word == full or word in shorts:
            return full + rest
    return lowered


def interface_aliases(name: str) -> set[str]:
    """Every spelling a device may print for ``name`` (full and abbreviated, lower-case)."""
    canon = canonical_interface(name)
    match = re.match(r"^([a-z-]+)(.*)$", canon)
    if not match:
        return {canon}
    word, rest = match.groups()
    aliases = {canon}
    for full, shorts in _ABBREVIATIONS:
        if word == full:
            aliases.update(s + rest for s in shorts)
    return aliases


@dataclass(frozen=True)
class Prefix:
    """A prefix in the forms templates need (VRP wants a mask, Comware takes a length)."""

    network: str
    netmask: str
    prefixlen: int
    version: int

    @property
    def cidr(self) -> str:
        return f"{self.network}/{self.prefixlen}"

    @classmethod
    def parse(cls, text: str) -> Prefix:
        net = ipaddress.ip_network(text, strict=True)
        return cls(str(net.network_address), str(net.netmask), net.prefixlen, net.version)


@dataclass(frozen=True)
class Target:
    """Everything a driver needs to render and check one action, and nothing secret."""

    method: str
    device: str
    device_type: str
    host: str
    port: int
    institution: str
    protected: bool
    link_id: int
    link_kind: str
    interface: str | None = None
    prefixes: tuple[str, ...] = field(default_factory=tuple)

    def prefix_objects(self) -> list[Prefix]:
        return [Prefix.parse(p) for p in self.prefixes]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prefixes"] = list(self.prefixes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        values = dict(data)
        values["prefixes"] = tuple(values.get("prefixes") or ())
        return cls(**values)


def check_interface(name: str | None, uplinks: list[str]) -> str:
    """The interface to shut, or :class:`TargetRefused` saying why it may not be."""
    if name is None or not name.strip():
        raise TargetRefused("empty target: the link has no interface")
    name = name.strip()
    if not _INTERFACE_RE.match(name):
        raise TargetRefused(
            f"refusing interface {name!r}: not a single interface name (wildcard, range or "
            "stray characters)"
        )
    canon = canonical_interface(name)
    for uplink in uplinks:
        up = canonical_interface(uplink)
        if canon == up:
            raise TargetRefused(f"refusing {name}: it is an uplink of the device")
        if up.startswith(canon + ".") or up.startswith(canon + ":"):
            raise TargetRefused(f"refusing {name}: the uplink {uplink} is a sub-interface of it")
    return name


def check_prefixes(prefixes: list[str], mgmt_address: str) -> tuple[str, ...]:
    """Validated, de-duplicated, sorted prefixes, or :class:`TargetRefused`."""
    if not prefixes:
        raise TargetRefused("empty target: the institution has no allocated prefixes")
    try:
        mgmt = ipaddress.ip_address(mgmt_address)
    except ValueError:
        mgmt = None
    seen: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
    for raw in prefixes:
        try:
            net = ipaddress.ip_network(raw.strip(), strict=True)
        except ValueError as exc:
            raise TargetRefused(f"refusing prefix {raw!r}: {exc}") from None
        if net.prefixlen < MIN_PREFIXLEN[net.version]:
            raise TargetRefused(
                f"refusing prefix {net}: wider than /{MIN_PREFIXLEN[net.version]} "
                "(a wildcard would cut far more than one institution)"
            )
        if mgmt is not None and mgmt.version == net.version and mgmt in net:
            raise TargetRefused(f"refusing prefix {net}: it holds the device's own address")
        seen[str(net)] = net
    return tuple(str(n) for n in sorted(seen.values(), key=lambda n: (n.version, n)))


def _cut_prefixes(session: Session, action: EnforcementAction) -> list[str] | None:
    """The prefixes the last verified block of this link used, so a restore undoes exactly
    that block even if the allocations changed since."""
    cut = session.scalars(
        select(EnforcementAction)
        .where(
            EnforcementAction.link_id == action.link_id,
            EnforcementAction.kind == ActionKind.CUT,
            EnforcementAction.state == ActionState.VERIFIED,
            EnforcementAction.id != action.id,
        )
        .order_by(EnforcementAction.id.desc())
        .limit(1)
    ).first()
    if cut is None or (cut.target or {}).get("method") != BLOCK_PREFIXES:
        return None
    return list(cut.target.get("prefixes") or [])


def resolve(session: Session, action: EnforcementAction) -> Target:
    """Work out the target of ``action`` from the inventory, refusing unsafe ones.

    VPDN users have no interface of their own on the LNS, so their links are always cut by
    blocking their prefixes whatever method the request named."""
    link, device = action.link, action.device
    institution = session.get(Institution, link.institution_id)
    if institution is None:  # pragma: no cover - foreign key
        raise TargetRefused(f"link {link.id} has no institution")
    if not _CODE_RE.match(institution.code):
        raise TargetRefused(f"refusing institution code {institution.code!r}")
    method = BLOCK_PREFIXES if link.kind == LinkKind.VPDN else action.method
    if method not in METHODS:
        raise TargetRefused(f"unknown method {action.method!r}: use one of {', '.join(METHODS)}")
    common: dict[str, Any] = {
        "method": method,
        "device": device.name,
        "device_type": device.device_type,
        "host": device.mgmt_address,
        "port": device.ssh_port,
        "institution": institution.code,
        "protected": institution.protected,
        "link_id": link.id,
        "link_kind": str(link.kind),
    }
    if method == SHUTDOWN_INTERFACE:
        interface = check_interface(link.interface, list(device.uplink_interfaces or []))
        return Target(interface=interface, **common)
    prefixes = None
    if action.kind == ActionKind.RESTORE:
        prefixes = _cut_prefixes(session, action)
    if prefixes is None:
        prefixes = list(
            session.scalars(
                select(IpAllocation.prefix).where(IpAllocation.institution_id == institution.id)
            )
        )
    return Target(prefixes=check_prefixes(prefixes, device.mgmt_address), **common)
