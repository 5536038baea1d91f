"""Simulated edge routers built from a lab inventory, with anomalies injected on purpose.

The SNMP collector must turn what routers report into observations about institutions, so its
tests need routers whose interfaces, ARP and route tables match the inventory (sub-interface
per link, ifAlias carrying the institution code, hosts inside the allocated prefixes) plus a
known set of things that are wrong. ``routers_from_inventory`` returns the routers and, in
``.scenario``, exactly what was injected, so tests can assert the collector finds each one
with the right institution and link. ``big_router`` is the benchmark's large router.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from lab.snmp.snmprec import Arp, Iface, Route, RouterSpec, SnmprecError, Tables

Scenario = Literal["default", "clean"]

ROLES = ("edge_router", "firewall")
HOSTS_PER_LINK = 3
INTERNET_NEXT_HOP = "203.0.113.1"  # documentation range stands for "the internet"
INTERNET_PREFIX = ("198.51.100.0", 24)
ROGUE_NET = ipaddress.IPv4Network("192.168.1.0/24")  # a home-router LAN behind a link
CLINIC_WORDS = ("诊所", "卫生院", "卫生服务", "卫生室")


class LabRouters(list[RouterSpec]):
    """The routers, plus ``scenario``: a JSON-friendly dict of what was injected.

    Keys: ``unauthorized_ip``, ``network_extension``, ``outbound_internet``, ``link_down``,
    ``many_hosts``, ``cut`` (lists of dicts with device, interface, if_index, institution and
    the specifics), ``tables`` (device -> new/old/both), ``v3_only`` (device names)."""

    scenario: dict[str, Any]

    def __init__(self, routers: list[RouterSpec], scenario: dict[str, Any]) -> None:
        super().__init__(routers)
        self.scenario = scenario

    def by_name(self, name: str) -> RouterSpec:
        for r in self:
            if r.name == name:
                return r
        raise KeyError(name)


def mac_for(*parts: str) -> str:
    """A stable locally administered MAC for a host (same inputs, same MAC)."""
    digest = hashlib.sha1("/".join(parts).encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _counter(*parts: str, scale: int = 1 << 40) -> int:
    return int.from_bytes(hashlib.sha1("/".join(parts).encode()).digest()[:8], "big") % scale


@dataclass
class _Link:
    device: str
    interface: str
    institution: str
    state: str
    if_index: int = 0


def _hosts(prefixes: list[ipaddress.IPv4Network]) -> Iterator[ipaddress.IPv4Address]:
    """Usable host addresses of an institution, skipping each prefix's gateway (.1)."""
    for net in prefixes:
        hosts = list(net.hosts())
        yield from hosts[1:]


def _load(path: Path | str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SnmprecError(f"{path}: cannot read inventory: {exc}") from exc
    if not isinstance(data, dict):
        raise SnmprecError(f"{path}: an inventory is a mapping of sections")
    return data


def routers_from_inventory(
    inventory_yaml_path: Path | str, *, scenario: Scenario = "default"
) -> LabRouters:
    """One RouterSpec per edge_router/firewall device of a lab inventory (YAML).

    ``scenario="clean"`` injects nothing (every device serves both table generations);
    ``"default"`` injects one of each anomaly and gives one device only the old tables and
    another only the new ones. Deterministic: the same file gives the same routers."""
    if scenario not in ("default", "clean"):
        raise SnmprecError(f"unknown scenario {scenario!r} (default or clean)")
    inv = _load(inventory_yaml_path)
    devices = [d for d in inv.get("devices") or [] if d.get("role") in ROLES]
    dev_names = {d["name"] for d in devices}
    insts = {i["code"]: i for i in inv.get("institutions") or []}
    allocs: dict[str, list[ipaddress.IPv4Network]] = {}
    for a in inv.get("ip_allocations") or []:
        allocs.setdefault(a["institution"], []).append(ipaddress.IPv4Network(a["prefix"]))
    all_allocs = [n for nets in allocs.values() for n in nets]
    backbone = [ipaddress.IPv4Network(b["prefix"]) for b in inv.get("backbone_prefixes") or []] or [
        ipaddress.IPv4Network("10.0.0.0/8")
    ]
    links = [
        _Link(lk["device"], lk["interface"], lk["institution"], lk.get("state", "up"))
        for lk in inv.get("links") or []
        if lk.get("device") in dev_names and lk.get("interface")
    ]

    # Interfaces: uplinks, then the parents of the sub-interfaces, then one per link.
    routers: dict[str, RouterSpec] = {}
    for n, d in enumerate(devices):
        name = d["name"]
        spec = RouterSpec(name=name, snmp=dict(d.get("snmp") or {}))
        spec.sys_descr = f"Edge Warden lab {d.get('device_type', 'router')} {d['role']}"
        spec.sys_uptime = 8_640_000 + n * 360_000
        uplinks = list(d.get("uplink_interfaces") or [])
        for up in uplinks:
            spec.interfaces.append(_iface(spec, up, "uplink 医保骨干网", 10_000))
        for lk in links:
            parent = lk.interface.split(".")[0]
            if (
                lk.device == name
                and parent != lk.interface
                and all(i.name != parent for i in spec.interfaces)
            ):
                spec.interfaces.append(_iface(spec, parent, "institution access", 1000))
        for lk in links:
            if lk.device != name:
                continue
            inst = insts.get(lk.institution, {})
            itf = _iface(
                spec, lk.interface, f"{lk.institution} {inst.get('name', '')}".strip(), 100
            )
            itf.admin_up = lk.state != "cut"
            itf.oper_up = lk.state == "up"
            spec.interfaces.append(itf)
            lk.if_index = itf.if_index
        up_index = spec.interfaces[0].if_index if uplinks else 0
        hop = f"10.140.254.{1 + n % 250}"
        for net in backbone:
            spec.routes.append(Route(str(net.network_address), net.prefixlen, hop, up_index))
        routers[name] = spec

    # Connected routes and a few hosts per link, inside the institution's allocations.
    free = {code: _hosts(nets) for code, nets in allocs.items()}
    seen_routes: set[tuple[str, str]] = set()
    for lk in links:
        spec = routers[lk.device]
        for net in allocs.get(lk.institution, []):
            if (lk.device, str(net)) not in seen_routes:
                seen_routes.add((lk.device, str(net)))
                spec.routes.append(
                    Route(str(net.network_address), net.prefixlen, "0.0.0.0", lk.if_index)
                )
        it = free.get(lk.institution)
        for _ in range(HOSTS_PER_LINK if it else 0):
            ip = next(it, None) if it else None
            if ip is None:
                break
            spec.arp.append(Arp(lk.if_index, str(ip), mac_for(lk.institution, str(ip))))

    sc: dict[str, Any] = {
        "unauthorized_ip": [],
        "network_extension": [],
        "outbound_internet": [],
        "link_down": [],
        "many_hosts": [],
        "cut": [_where(lk) for lk in links if lk.state == "cut"],
        "tables": {},
        "v3_only": [d["name"] for d in devices if (d.get("snmp") or {}).get("version") == "v3"],
    }
    if scenario == "default":
        _inject(routers, links, insts, allocs, all_allocs, free, sc)
    for name, spec in routers.items():
        sc["tables"][name] = spec.tables
    return LabRouters(list(routers.values()), sc)


def _iface(spec: RouterSpec, name: str, alias: str, speed: int) -> Iface:
    idx = len(spec.interfaces) + 1
    return Iface(
        if_index=idx,
        name=name,
        alias=alias,
        high_speed=speed,
        in_octets=_counter(spec.name, name, "in"),
        out_octets=_counter(spec.name, name, "out"),
    )


def _where(lk: _Link) -> dict[str, Any]:
    return {
        "device": lk.device,
        "interface": lk.interface,
        "if_index": lk.if_index,
        "institution": lk.institution,
    }


def _inject(
    routers: dict[str, RouterSpec],
    links: list[_Link],
    insts: dict[str, dict[str, Any]],
    allocs: dict[str, list[ipaddress.IPv4Network]],
    all_allocs: list[ipaddress.IPv4Network],
    free: dict[str, Iterator[ipaddress.IPv4Address]],
    sc: dict[str, Any],
) -> None:
    """One of each anomaly, each on a different link; see LabRouters for what is recorded."""
    up = [lk for lk in links if lk.state == "up" and allocs.get(lk.institution)]
    if len(up) < 5:
        raise SnmprecError("the default scenario needs at least 5 links that are up")
    used: set[int] = set()
    used_insts: set[str] = set()

    def take(pred: Any = None, avoid_device: str | None = None) -> _Link:
        """The first unused link, preferring ones that match ``pred``, are not on
        ``avoid_device`` and whose institution has no anomaly yet."""
        for strict in (True, False):
            for i, lk in enumerate(up):
                if i in used:
                    continue
                if strict and (
                    (avoid_device and lk.device == avoid_device)
                    or (pred is not None and not pred(lk))
                    or lk.institution in used_insts
                ):
                    continue
                used.add(i)
                used_insts.add(lk.institution)
                return lk
        raise SnmprecError("not enough links for the default scenario")

    def is_clinic(lk: _Link) -> bool:
        inst = insts.get(lk.institution, {})
        name = str(inst.get("name", ""))
        return any(w in name for w in CLINIC_WORDS) or inst.get("kind") == "pharmacy"

    # An address nobody was allocated, behind a clinic's (or pharmacy's) link.
    lk = take(is_clinic)
    ip = next(
        a
        for a in ROGUE_NET.hosts()
        if int(a) >= int(ROGUE_NET[100]) and not any(a in n for n in all_allocs)
    )
    mac = mac_for("rogue", lk.device, str(ip))
    routers[lk.device].arp.append(Arp(lk.if_index, str(ip), mac))
    routers[lk.device].tables = "old"
    sc["unauthorized_ip"].append({**_where(lk), "ip": str(ip), "mac": mac})
    old_dev = lk.device

    # A host of institution X behind institution Y's link (the line extended to X).
    lk = take(avoid_device=old_dev)
    on_device = {x.institution for x in links if x.device == lk.device}
    other = next(
        (c for c in allocs if c != lk.institution and c not in on_device),
        next(c for c in allocs if c != lk.institution),
    )
    ip = list(allocs[other][0].hosts())[-1]
    mac = mac_for(other, str(ip))
    routers[lk.device].arp.append(Arp(lk.if_index, str(ip), mac))
    if lk.device != old_dev:
        routers[lk.device].tables = "new"
    sc["network_extension"].append({**_where(lk), "ip": str(ip), "mac": mac, "allocated_to": other})

    # A default route and an internet route toward a non-backbone next hop, out of a link.
    lk = take()
    spec = routers[lk.device]
    for dest, plen in (("0.0.0.0", 0), INTERNET_PREFIX):
        spec.routes.append(Route(dest, plen, INTERNET_NEXT_HOP, lk.if_index))
        sc["outbound_internet"].append(
            {**_where(lk), "dest": dest, "prefix_len": plen, "next_hop": INTERNET_NEXT_HOP}
        )

    # A link that is down although nobody cut it (a fault report is due).
    lk = take()
    next(i for i in routers[lk.device].interfaces if i.if_index == lk.if_index).oper_up = False
    sc["link_down"].append(_where(lk))

    # Every remaining address of an institution's allocation in use behind one link.
    lk = take(lambda x: any(n.prefixlen <= 28 for n in allocs[x.institution]))
    extra = [
        Arp(lk.if_index, str(a), mac_for(lk.institution, str(a))) for a in free[lk.institution]
    ]
    routers[lk.device].arp.extend(extra)
    hosts = sum(1 for a in routers[lk.device].arp if a.if_index == lk.if_index)
    sc["many_hosts"].append({**_where(lk), "hosts": hosts})


def big_router(
    name: str, n_subifs: int = 400, n_arp: int = 3000, *, tables: Tables = "both"
) -> RouterSpec:
    """A benchmark router: ``n_subifs`` sub-interfaces (one institution each, a /26 each) and
    ``n_arp`` ARP entries spread over them, plus connected and backbone routes."""
    if n_subifs < 1 or n_subifs > 1024:
        raise SnmprecError("n_subifs must be between 1 and 1024")
    if n_arp > n_subifs * 61:
        raise SnmprecError(f"{n_arp} ARP entries do not fit in {n_subifs} /26 subnets")
    spec = RouterSpec(name=name, tables=tables, sys_descr="Edge Warden lab benchmark router")
    spec.interfaces.append(_iface(spec, "GigabitEthernet0/0/0", "uplink 医保骨干网", 10_000))
    spec.interfaces.append(_iface(spec, "GigabitEthernet0/0/1", "institution access", 10_000))
    base = int(ipaddress.IPv4Address("10.160.0.0"))
    nets: list[ipaddress.IPv4Network] = []
    for i in range(n_subifs):
        itf = _iface(
            spec, f"GigabitEthernet0/0/1.{1001 + i}", f"H140500{i + 1:05d} 模拟医院{i + 1}", 100
        )
        spec.interfaces.append(itf)
        net = ipaddress.IPv4Network((base + 64 * i, 26))
        nets.append(net)
        spec.routes.append(Route(str(net.network_address), 26, "0.0.0.0", itf.if_index))
    for prefix in ("10.0.0.0/8", "172.16.0.0/16", "172.20.0.0/16"):
        net = ipaddress.IPv4Network(prefix)
        spec.routes.append(Route(str(net.network_address), net.prefixlen, "10.140.254.1", 1))
    for j in range(n_arp):
        k = j % n_subifs
        ip = str(nets[k].network_address + 2 + j // n_subifs)
        spec.arp.append(Arp(3 + k, ip, mac_for(name, ip)))
    return spec
