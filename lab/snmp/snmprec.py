"""Simulated routers as snmpsim ``.snmprec`` data: interfaces, ARP and route tables.

The SNMP collector is tested and benchmarked against snmpsim serving these files, so they hold
exactly the columns the collector reads, in the index layouts real agents use (checked against
Debian's net-snmp ``snmpd``): ipNetToPhysicalTable ``ifIndex.addrType.len.a.b.c.d``,
ipNetToMediaTable ``ifIndex.a.b.c.d``, inetCidrRouteTable (RFC 4292) ``1.4.dest.pfxLen.2.0.0
.1.4.nextHop``, ipCidrRouteTable (RFC 2096) ``dest.mask.tos.nextHop``. snmpsim needs the
lines sorted by numeric OID; text that is not printable ASCII is written hex-encoded (``4x``)
because snmpsim reads the files as ISO-8859-1.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

Tables = Literal["new", "old", "both"]

# SNMP base types as snmprec tags.
INTEGER, OCTET_STRING, OID, IP_ADDRESS = "2", "4", "6", "64"
COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = "65", "66", "67", "70"
KNOWN_TAGS = frozenset(
    {INTEGER, OCTET_STRING, OID, IP_ADDRESS, COUNTER32, GAUGE32, TIMETICKS, COUNTER64}
)

# Columns (numeric OIDs: Debian ships no MIB files).
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF_NUMBER = "1.3.6.1.2.1.2.1.0"
IF_ENTRY = "1.3.6.1.2.1.2.2.1"  # .1 ifIndex .2 ifDescr .3 ifType .7 admin .8 oper
IF_ADMIN_STATUS = IF_ENTRY + ".7"
IF_OPER_STATUS = IF_ENTRY + ".8"
IFX_ENTRY = "1.3.6.1.2.1.31.1.1.1"
IF_NAME = IFX_ENTRY + ".1"
IF_HC_IN_OCTETS = IFX_ENTRY + ".6"
IF_HC_OUT_OCTETS = IFX_ENTRY + ".10"
IF_HIGH_SPEED = IFX_ENTRY + ".15"
IF_ALIAS = IFX_ENTRY + ".18"
IP_NET_TO_PHYSICAL = "1.3.6.1.2.1.4.35.1"  # .4 PhysAddress .6 Type .7 State
IP_NET_TO_MEDIA = "1.3.6.1.2.1.4.22.1"  # .1 IfIndex .2 PhysAddress .3 NetAddress .4 Type
INET_CIDR_ROUTE = "1.3.6.1.2.1.4.24.7.1"  # .7 IfIndex .8 Type .9 Proto .10 Age .12 Metric1 .17
IP_CIDR_ROUTE = "1.3.6.1.2.1.4.24.4.1"  # .1 Dest .2 Mask .3 Tos .4 NextHop .5 IfIndex .6 Type ...

IF_TYPE_ETHERNET, IF_TYPE_L2VLAN = 6, 135
ARP_DYNAMIC = 3  # ipNetToPhysicalType / ipNetToMediaType dynamic(3)
ROUTE_LOCAL, ROUTE_REMOTE = 3, 4  # inetCidrRouteType / ipCidrRouteType
PROTO_LOCAL, PROTO_NETMGMT = 2, 3  # directly connected / static

_OID_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$")


class SnmprecError(ValueError):
    """A router spec or an .snmprec file is malformed; the message names the line or field."""


@dataclass
class Iface:
    """One row of ifTable/ifXTable."""

    if_index: int
    name: str
    alias: str = ""
    admin_up: bool = True
    oper_up: bool = True
    high_speed: int = 1000  # ifHighSpeed, Mbit/s
    in_octets: int = 0
    out_octets: int = 0


@dataclass
class Arp:
    """One ARP entry (IPv4) learnt on ``if_index``; ``mac`` as ``aa:bb:cc:dd:ee:ff``."""

    if_index: int
    ip: str
    mac: str


@dataclass
class Route:
    """One IPv4 route; ``next_hop`` 0.0.0.0 means directly connected (type local)."""

    dest: str
    prefix_len: int
    next_hop: str
    if_index: int


@dataclass
class RouterSpec:
    """Everything one simulated router answers over SNMP.

    ``tables`` picks which generation of the ARP and route tables it serves: ``new``
    (ipNetToPhysicalTable, inetCidrRouteTable), ``old`` (ipNetToMediaTable, ipCidrRouteTable)
    or ``both``. ``snmp`` carries the inventory's SNMP settings (version, community or v3 user)
    so a launcher knows how the device must answer; it is not served."""

    name: str
    interfaces: list[Iface] = field(default_factory=list)
    arp: list[Arp] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    tables: Tables = "both"
    sys_uptime: int = 8_640_000  # TimeTicks (1/100 s): one day
    sys_descr: str = "Edge Warden lab router"
    snmp: dict[str, Any] = field(default_factory=dict)

    def iface(self, name: str) -> Iface:
        """The interface called ``name`` (KeyError if there is none)."""
        for itf in self.interfaces:
            if itf.name == name:
                return itf
        raise KeyError(name)


class Record(NamedTuple):
    """One ``OID|TAG|VALUE`` line; ``tag`` keeps a trailing ``x`` for hex values."""

    oid: str
    tag: str
    value: str


def oid_key(oid: str) -> tuple[int, ...]:
    """Numeric sort key of a dotted OID (``1.10`` sorts after ``1.9``)."""
    return tuple(int(p) for p in oid.split("."))


def _text(value: str) -> tuple[str, str]:
    if value and all(0x20 <= ord(c) < 0x7F for c in value):
        return OCTET_STRING, value
    return OCTET_STRING + "x", value.encode("utf-8").hex()


def _mac_hex(mac: str) -> str:
    if not _MAC_RE.match(mac):
        raise SnmprecError(f"bad MAC address {mac!r}")
    return re.sub(r"[:-]", "", mac).lower()


def _ipv4(addr: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(addr)
    except ValueError as exc:
        raise SnmprecError(f"bad IPv4 address {addr!r}") from exc


def records(spec: RouterSpec) -> list[Record]:
    """The router's records sorted by OID; raises SnmprecError on a duplicate OID."""
    if spec.tables not in ("new", "old", "both"):
        raise SnmprecError(f"{spec.name}: tables must be new, old or both, not {spec.tables!r}")
    out: list[Record] = []

    def add(oid: str, tag: str, value: object) -> None:
        out.append(Record(oid, tag, str(value)))

    def add_text(oid: str, value: str) -> None:
        tag, val = _text(value)
        out.append(Record(oid, tag, val))

    add_text(SYS_DESCR, spec.sys_descr)
    add(SYS_OBJECT_ID, OID, "1.3.6.1.4.1.8072.3.2.10")
    add(SYS_UPTIME, TIMETICKS, spec.sys_uptime)
    add_text(SYS_NAME, spec.name)
    add(IF_NUMBER, INTEGER, len(spec.interfaces))
    for itf in spec.interfaces:
        i = itf.if_index
        if i <= 0:
            raise SnmprecError(f"{spec.name}: ifIndex must be positive, got {i}")
        sub = "." in itf.name
        add(f"{IF_ENTRY}.1.{i}", INTEGER, i)
        add_text(f"{IF_ENTRY}.2.{i}", itf.name)
        add(f"{IF_ENTRY}.3.{i}", INTEGER, IF_TYPE_L2VLAN if sub else IF_TYPE_ETHERNET)
        add(f"{IF_ADMIN_STATUS}.{i}", INTEGER, 1 if itf.admin_up else 2)
        add(f"{IF_OPER_STATUS}.{i}", INTEGER, 1 if itf.oper_up else 2)
        add_text(f"{IF_NAME}.{i}", itf.name)
        add(f"{IF_HC_IN_OCTETS}.{i}", COUNTER64, itf.in_octets)
        add(f"{IF_HC_OUT_OCTETS}.{i}", COUNTER64, itf.out_octets)
        add(f"{IF_HIGH_SPEED}.{i}", GAUGE32, itf.high_speed)
        if itf.alias:
            add_text(f"{IF_ALIAS}.{i}", itf.alias)
        else:
            add(f"{IF_ALIAS}.{i}", OCTET_STRING, "")
    new = spec.tables in ("new", "both")
    old = spec.tables in ("old", "both")
    for a in spec.arp:
        ip = str(_ipv4(a.ip))
        mac = _mac_hex(a.mac)
        if new:
            idx = f"{a.if_index}.1.4.{ip}"
            add(f"{IP_NET_TO_PHYSICAL}.4.{idx}", OCTET_STRING + "x", mac)
            add(f"{IP_NET_TO_PHYSICAL}.6.{idx}", INTEGER, ARP_DYNAMIC)
            add(f"{IP_NET_TO_PHYSICAL}.7.{idx}", INTEGER, 1)  # reachable
        if old:
            idx = f"{a.if_index}.{ip}"
            add(f"{IP_NET_TO_MEDIA}.1.{idx}", INTEGER, a.if_index)
            add(f"{IP_NET_TO_MEDIA}.2.{idx}", OCTET_STRING + "x", mac)
            add(f"{IP_NET_TO_MEDIA}.3.{idx}", IP_ADDRESS, ip)
            add(f"{IP_NET_TO_MEDIA}.4.{idx}", INTEGER, ARP_DYNAMIC)
    for r in spec.routes:
        try:
            net = ipaddress.IPv4Network(f"{r.dest}/{r.prefix_len}")
        except ValueError as exc:
            raise SnmprecError(f"{spec.name}: bad route {r.dest}/{r.prefix_len}") from exc
        dest, hop = str(net.network_address), str(_ipv4(r.next_hop))
        local = hop == "0.0.0.0"
        rtype = ROUTE_LOCAL if local else ROUTE_REMOTE
        proto = PROTO_LOCAL if local else PROTO_NETMGMT
        if new:
            idx = f"1.4.{dest}.{net.prefixlen}.2.0.0.1.4.{hop}"
            add(f"{INET_CIDR_ROUTE}.7.{idx}", INTEGER, r.if_index)
            add(f"{INET_CIDR_ROUTE}.8.{idx}", INTEGER, rtype)
            add(f"{INET_CIDR_ROUTE}.9.{idx}", INTEGER, proto)
            add(f"{INET_CIDR_ROUTE}.10.{idx}", GAUGE32, 3600)
            add(f"{INET_CIDR_ROUTE}.12.{idx}", INTEGER, 0)
            add(f"{INET_CIDR_ROUTE}.17.{idx}", INTEGER, 1)  # active
        if old:
            mask = str(net.netmask)
            idx = f"{dest}.{mask}.0.{hop}"
            add(f"{IP_CIDR_ROUTE}.1.{idx}", IP_ADDRESS, dest)
            add(f"{IP_CIDR_ROUTE}.2.{idx}", IP_ADDRESS, mask)
            add(f"{IP_CIDR_ROUTE}.3.{idx}", INTEGER, 0)
            add(f"{IP_CIDR_ROUTE}.4.{idx}", IP_ADDRESS, hop)
            add(f"{IP_CIDR_ROUTE}.5.{idx}", INTEGER, r.if_index)
            add(f"{IP_CIDR_ROUTE}.6.{idx}", INTEGER, rtype)
            add(f"{IP_CIDR_ROUTE}.7.{idx}", INTEGER, proto)
            add(f"{IP_CIDR_ROUTE}.8.{idx}", INTEGER, 3600)
            add(f"{IP_CIDR_ROUTE}.11.{idx}", INTEGER, 0)
            add(f"{IP_CIDR_ROUTE}.16.{idx}", INTEGER, 1)
    keyed = sorted(((oid_key(r.oid), r) for r in out), key=lambda kr: kr[0])
    for (k1, r1), (k2, _) in itertools.pairwise(keyed):
        if k1 == k2:
            raise SnmprecError(f"{spec.name}: duplicate OID {r1.oid} (two rows with one index)")
    return [r for _, r in keyed]


def write_snmprec(spec: RouterSpec, path: Path | str) -> Path:
    """Write the router's data to ``path`` (snmpsim's community is the file's stem)."""
    path = Path(path)
    if path.suffix != ".snmprec":
        raise SnmprecError(f"{path}: snmpsim only reads files named *.snmprec")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="ascii", newline="\n") as fh:
        fh.writelines(f"{r.oid}|{r.tag}|{r.value}\n" for r in records(spec))
    tmp.replace(path)
    return path


def write_lab(specs: Iterable[RouterSpec], data_dir: Path | str) -> dict[str, Path]:
    """One ``<name>.snmprec`` per router in ``data_dir``; returns name -> file."""
    data_dir = Path(data_dir)
    return {s.name: write_snmprec(s, data_dir / f"{s.name}.snmprec") for s in specs}


def read_snmprec(path: Path | str) -> list[Record]:
    """Parse and check a file: three fields, a known tag, numeric OIDs strictly increasing."""
    out: list[Record] = []
    prev: tuple[int, ...] | None = None
    with Path(path).open(encoding="iso-8859-1") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            parts = line.split("|", 2)
            if len(parts) != 3 or not _OID_RE.match(parts[0]):
                raise SnmprecError(f"{path}:{lineno}: not OID|TAG|VALUE: {line[:80]!r}")
            oid, tag, value = parts
            if tag.removesuffix("x") not in KNOWN_TAGS:
                raise SnmprecError(f"{path}:{lineno}: unknown tag {tag!r}")
            key = oid_key(oid)
            if prev is not None and key <= prev:
                raise SnmprecError(f"{path}:{lineno}: OID {oid} is not after the previous one")
            prev = key
            out.append(Record(oid, tag, value))
    return out


def decode(record: Record) -> int | str | bytes:
    """The Python value of a record: int for numbers, str for IP/OID, bytes for strings."""
    tag, hexed = record.tag.removesuffix("x"), record.tag.endswith("x")
    if tag == OCTET_STRING:
        return bytes.fromhex(record.value) if hexed else record.value.encode("iso-8859-1")
    if tag == IP_ADDRESS:
        if hexed:
            return str(ipaddress.IPv4Address(bytes.fromhex(record.value)))
        return record.value
    if tag == OID:
        return record.value
    return int(record.value)


def iter_table(recs: Iterable[Record], column: str) -> Iterator[tuple[str, Record]]:
    """(index suffix, record) for every record under ``column`` (a dotted OID prefix)."""
    prefix = column + "."
    for r in recs:
        if r.oid.startswith(prefix):
            yield r.oid[len(prefix) :], r


def __getattr__(name: str) -> Any:
    """``routers_from_inventory``, ``big_router`` and ``LabRouters`` live in lab.snmp.routers
    (it imports this module); they are reachable from here too, as the issue names them."""
    if name in ("routers_from_inventory", "big_router", "LabRouters"):
        from lab.snmp import routers

        return getattr(routers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
