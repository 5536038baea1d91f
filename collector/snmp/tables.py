"""Turn walked columns into rows: interfaces, ARP entries and routes.

Index layouts: ipNetToPhysicalTable ``ifIndex.addrType.len.addr`` (RFC 4293), ipNetToMediaTable
``ifIndex.a.b.c.d``, inetCidrRouteTable ``destType.len.dest.pfxLen.policyLen.policy.
nhType.len.nextHop`` (RFC 4292), ipCidrRouteTable ``dest.mask.tos.nextHop`` (RFC 2096).
Rows that cannot be parsed are counted in ``skipped`` and left out, never guessed."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from collector.snmp.ber import Oid, Value
from collector.snmp.oids import ARP_TYPE_INVALID, ARP_TYPE_LOCAL
from collector.snmp.walker import Walk


@dataclass(slots=True)
class IfRow:
    if_index: int
    name: str = ""
    alias: str = ""
    admin_status: int | None = None
    oper_status: int | None = None
    high_speed: int | None = None
    in_octets: int | None = None
    out_octets: int | None = None


@dataclass(slots=True, frozen=True)
class ArpRow:
    if_index: int
    ip: str
    mac: str
    context: str = ""


@dataclass(slots=True, frozen=True)
class RouteRow:
    dest: str
    prefix_len: int
    next_hop: str | None
    if_index: int | None
    route_type: int | None
    context: str = ""

    @property
    def prefix(self) -> str:
        return f"{self.dest}/{self.prefix_len}"


def text(value: Value) -> str:
    """DisplayString: UTF-8, else GB18030 (Chinese vendors' aliases), else replacement."""
    if not isinstance(value, bytes):
        return "" if value is None else str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return value.decode("gb18030")
        except UnicodeDecodeError:
            return value.decode("utf-8", "replace")


def _int(value: Value) -> int | None:
    return value if isinstance(value, int) else None


def mac_text(value: Value) -> str | None:
    if not isinstance(value, bytes) or len(value) != 6:
        return None
    return value.hex(":")


def interfaces(walk: Walk) -> list[IfRow]:
    rows: dict[int, IfRow] = {}

    def row(suffix: Oid) -> IfRow | None:
        if len(suffix) != 1:
            return None
        idx = suffix[0]
        r = rows.get(idx)
        if r is None:
            r = rows[idx] = IfRow(idx)
        return r

    cols = walk.columns
    for suffix, v in cols["ifName"].rows:
        if (r := row(suffix)) is not None:
            r.name = text(v)
    for suffix, v in cols["ifAlias"].rows:
        if (r := row(suffix)) is not None:
            r.alias = text(v)
    for col, attr in (
        ("ifAdminStatus", "admin_status"),
        ("ifOperStatus", "oper_status"),
        ("ifHighSpeed", "high_speed"),
        ("ifHCInOctets", "in_octets"),
        ("ifHCOutOctets", "out_octets"),
    ):
        for suffix, v in cols[col].rows:
            if (r := row(suffix)) is not None:
                setattr(r, attr, _int(v))
    return [rows[k] for k in sorted(rows)]


def _addr(kind: int, raw: Oid) -> str | None:
    try:
        if kind == 1 and len(raw) == 4:
            return str(ipaddress.IPv4Address(bytes(raw)))
        if kind == 2 and len(raw) == 16:
            return str(ipaddress.IPv6Address(bytes(raw)))
    except ValueError:
        return None
    return None


def arp_new(walk: Walk, context: str) -> tuple[list[ArpRow], int]:
    """ipNetToPhysicalTable rows (IPv4 and IPv6), skipping invalid and the router's own
    (local) entries; returns (rows, skipped)."""
    types = {s: v for s, v in walk.columns["ipNetToPhysicalType"].rows}
    out: list[ArpRow] = []
    skipped = 0
    for suffix, v in walk.columns["ipNetToPhysicalPhysAddress"].rows:
        if types.get(suffix) in (ARP_TYPE_INVALID, ARP_TYPE_LOCAL):
            continue
        mac = mac_text(v)
        ip = None
        if len(suffix) >= 3 and len(suffix) == 3 + suffix[2]:
            ip = _addr(suffix[1], suffix[3:])
        if mac is None or ip is None:
            skipped += 1
            continue
        out.append(ArpRow(suffix[0], ip, mac, context))
    return out, skipped


def arp_old(walk: Walk, context: str) -> tuple[list[ArpRow], int]:
    """ipNetToMediaTable rows (IPv4 only), skipping invalid entries."""
    types = {s: v for s, v in walk.columns["ipNetToMediaType"].rows}
    out: list[ArpRow] = []
    skipped = 0
    for suffix, v in walk.columns["ipNetToMediaPhysAddress"].rows:
        if types.get(suffix) == ARP_TYPE_INVALID:
            continue
        mac = mac_text(v)
        ip = _addr(1, suffix[1:]) if len(suffix) == 5 else None
        if mac is None or ip is None:
            skipped += 1
            continue
        out.append(ArpRow(suffix[0], ip, mac, context))
    return out, skipped


def _take(suffix: Oid, pos: int) -> tuple[Oid, int]:
    """A length-prefixed index part: (sub-identifiers, next position)."""
    n = suffix[pos]
    part = suffix[pos + 1 : pos + 1 + n]
    if len(part) != n:
        raise IndexError("short index")
    return part, pos + 1 + n


def routes_new(walk: Walk, context: str) -> tuple[list[RouteRow], int]:
    types = {s: v for s, v in walk.columns["inetCidrRouteType"].rows}
    ifindex = {s: v for s, v in walk.columns["inetCidrRouteIfIndex"].rows}
    out: list[RouteRow] = []
    skipped = 0
    for suffix in ifindex.keys() | types.keys():
        try:
            dtype = suffix[0]
            dest_raw, pos = _take(suffix, 1)
            plen = suffix[pos]
            _policy, pos = _take(suffix, pos + 1)
            nhtype = suffix[pos]
            nh_raw, pos = _take(suffix, pos + 1)
        except IndexError:
            skipped += 1
            continue
        dest = _addr(dtype, dest_raw)
        if dest is None or pos != len(suffix):
            skipped += 1
            continue
        nh = _addr(nhtype, nh_raw) if nh_raw else None
        if nh in ("0.0.0.0", "::"):
            nh = None
        out.append(
            RouteRow(dest, plen, nh, _int(ifindex.get(suffix)), _int(types.get(suffix)), context)
        )
    out.sort(key=lambda r: (r.dest, r.prefix_len, r.next_hop or ""))
    return out, skipped


def routes_old(walk: Walk, context: str) -> tuple[list[RouteRow], int]:
    types = {s: v for s, v in walk.columns["ipCidrRouteType"].rows}
    ifindex = {s: v for s, v in walk.columns["ipCidrRouteIfIndex"].rows}
    out: list[RouteRow] = []
    skipped = 0
    for suffix in ifindex.keys() | types.keys():
        if len(suffix) != 13:
            skipped += 1
            continue
        dest = _addr(1, suffix[0:4])
        mask = _addr(1, suffix[4:8])
        nh = _addr(1, suffix[9:13])
        if dest is None or mask is None:
            skipped += 1
            continue
        try:
            plen = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        except ValueError:
            skipped += 1
            continue
        out.append(
            RouteRow(
                dest,
                plen,
                None if nh in (None, "0.0.0.0") else nh,
                _int(ifindex.get(suffix)),
                _int(types.get(suffix)),
                context,
            )
        )
    out.sort(key=lambda r: (r.dest, r.prefix_len, r.next_hop or ""))
    return out, skipped
