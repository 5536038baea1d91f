"""The inventory as the sweep needs it, loaded once per sweep: links per device, institution
codes, allocated prefixes and backbone prefixes, with longest-prefix lookups that cost a few
dict probes per address (a device may list 3,000 ARP entries; no per-row SELECT)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import BackbonePrefix, Institution, IpAllocation, Link, LinkState
from rules.policy import PolicyStore, resolve_store

_TOKEN = re.compile(r"[A-Za-z0-9]+")
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class PrefixIndex:
    """Longest-prefix match over networks: one dict per (IP version, prefix length)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, int], dict[int, int]] = {}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}

    def add(self, prefix: str, value: int) -> None:
        net = ipaddress.ip_network(prefix, strict=False)
        key = (net.version, net.prefixlen)
        if key not in self._tables:
            self._tables[key] = {}
            self._lengths[net.version] = sorted({*self._lengths[net.version], net.prefixlen})[::-1]
        self._tables[key][int(net.network_address)] = value

    def lookup(self, address: str, *, max_len: int | None = None) -> int | None:
        """The value of the longest prefix containing ``address`` (only prefixes no longer
        than ``max_len`` when given: "is this route's prefix inside a known one")."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        bits = 32 if ip.version == 4 else 128
        value = int(ip)
        for plen in self._lengths[ip.version]:
            if max_len is not None and plen > max_len:
                continue
            net = value >> (bits - plen) << (bits - plen) if plen else 0
            hit = self._tables[(ip.version, plen)].get(net)
            if hit is not None:
                return hit
        return None

    def contains_net(self, net: IpNet) -> bool:
        return self.lookup(str(net.network_address), max_len=net.prefixlen) is not None


@dataclass(frozen=True)
class LinkInfo:
    id: int
    institution_id: int
    interface: str | None
    vpdn_account: str | None
    state: LinkState


@dataclass
class Inventory:
    """What mapping and detection look up, detached from the session."""

    codes: dict[str, int] = field(default_factory=dict)  # institution code → id
    code_of: dict[int, str] = field(default_factory=dict)
    links_by_device: dict[int, list[LinkInfo]] = field(default_factory=dict)
    allocations: PrefixIndex = field(default_factory=PrefixIndex)  # → institution id
    backbone: PrefixIndex = field(default_factory=PrefixIndex)
    host_limit: dict[int, int] = field(default_factory=dict)  # institution id → most hosts

    @classmethod
    def load(cls, session: Session, store: PolicyStore | None = None) -> Inventory:
        inv = cls()
        policies = resolve_store(store)
        for inst in session.scalars(select(Institution)):
            inv.codes[inst.code] = inst.id
            inv.code_of[inst.id] = inst.code
            limit = policies.for_institution(inst).detection.host_limit(str(inst.kind))
            if limit is not None:
                inv.host_limit[inst.id] = limit
        for row in session.execute(
            select(
                Link.id,
                Link.device_id,
                Link.institution_id,
                Link.interface,
                Link.vpdn_account,
                Link.state,
            )
        ):
            inv.links_by_device.setdefault(row.device_id, []).append(
                LinkInfo(row.id, row.institution_id, row.interface, row.vpdn_account, row.state)
            )
        for prefix, iid in session.execute(
            select(IpAllocation.prefix, IpAllocation.institution_id)
        ):
            inv.allocations.add(prefix, iid)
        for bid, prefix in session.execute(select(BackbonePrefix.id, BackbonePrefix.prefix)):
            inv.backbone.add(prefix, bid)
        return inv

    def map_interfaces(
        self, device_id: int, interfaces: list[tuple[int, str, str]]
    ) -> dict[int, LinkInfo]:
        """ifIndex → link for (ifIndex, ifName, ifAlias) rows: Link.interface == ifName first;
        then, for interfaces still unmapped, a link of this device whose institution code (or
        VPDN account) appears in ifAlias, when exactly one such link is left."""
        links = self.links_by_device.get(device_id, [])
        by_name = {lk.interface: lk for lk in links if lk.interface}
        out: dict[int, LinkInfo] = {}
        for if_index, name, _ in interfaces:
            if name in by_name:
                out[if_index] = by_name[name]
        taken = {lk.id for lk in out.values()}
        free = [lk for lk in links if lk.id not in taken]
        for if_index, _, alias in interfaces:
            if if_index in out or not alias:
                continue
            tokens = set(_TOKEN.findall(alias))
            ids = {self.codes[t] for t in tokens if t in self.codes}
            candidates = [
                lk
                for lk in free
                if lk.institution_id in ids or (lk.vpdn_account and lk.vpdn_account in alias)
            ]
            if len(candidates) == 1:
                out[if_index] = candidates[0]
        return out
