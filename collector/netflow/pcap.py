"""Minimal pcap / pcapng reader yielding UDP payloads (for ``flows decode`` and tests).

Hand-written rather than scapy's dissector: an operator's capture can hold millions of
datagrams and dissecting every packet into Python objects is far slower than the decoder.
Supports Ethernet (with VLAN tags), Linux cooked (SLL, SLL2), raw IP and BSD loopback link
types, IPv4 (non-fragmented or first fragments are skipped) and IPv6 (extension headers
walked). Anything else is counted in :class:`PcapStats` and skipped.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
}
PCAPNG_SHB = 0x0A0D0D0A

LINK_NULL = 0
LINK_ETHERNET = 1
LINK_RAW = (12, 14, 101)
LINK_LOOP = 108
LINK_SLL = 113
LINK_SLL2 = 276


class PcapError(ValueError):
    """The file is not a pcap/pcapng capture or is damaged beyond its last whole packet."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    timestamp: float
    src: str
    src_port: int
    dst: str
    dst_port: int
    payload: bytes


@dataclass
class PcapStats:
    packets: int = 0
    udp: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def read_udp(path: str | Path, stats: PcapStats | None = None) -> Iterator[UdpDatagram]:
    """UDP datagrams of a pcap or pcapng file, in file order."""
    stats = stats if stats is not None else PcapStats()
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        if head in PCAP_MAGICS:
            frames = _pcap_frames(fh)
        elif len(head) == 4 and struct.unpack("<I", head)[0] == PCAPNG_SHB:
            frames = _pcapng_frames(fh)
        else:
            raise PcapError(f"{path}: not a pcap or pcapng file")
        for ts, linktype, frame in frames:
            stats.packets += 1
            dgram = _udp(ts, linktype, frame, stats)
            if dgram is not None:
                stats.udp += 1
                yield dgram


def _pcap_frames(fh: BinaryIO) -> Iterator[tuple[float, int, bytes]]:
    header = fh.read(24)
    if len(header) < 24:
        raise PcapError("truncated pcap header")
    endian, scale = PCAP_MAGICS[header[:4]]
    linktype = struct.unpack(endian + "I", header[20:24])[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    while True:
        h = fh.read(16)
        if len(h) < 16:
            return
        sec, frac, incl, _orig = rec.unpack(h)
        data = fh.read(incl)
        if len(data) < incl:
            return  # capture cut short (tcpdump killed): keep what was whole
        yield sec + frac / scale, linktype, data


def _pcapng_frames(fh: BinaryIO) -> Iterator[tuple[float, int, bytes]]:
    endian = "<"
    interfaces: list[tuple[int, float]] = []
    while True:
        h = fh.read(8)
        if len(h) < 8:
            return
        btype = struct.unpack(endian + "I", h[:4])[0]
        if btype == PCAPNG_SHB or struct.unpack("<I", h[:4])[0] == PCAPNG_SHB:
            bom = fh.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack(endian + "I", h[4:8])[0]
            if blen < 16:
                raise PcapError("bad pcapng section header")
            fh.read(blen - 12)
            interfaces = []
            continue
        blen = struct.unpack(endian + "I", h[4:8])[0]
        if blen < 12 or blen % 4:
            raise PcapError("bad pcapng block length")
        body = fh.read(blen - 8)
        if len(body) < blen - 8:
            return
        body = body[:-4]  # trailing block length
        if btype == 1:  # interface description
            linktype = struct.unpack(endian + "H", body[:2])[0]
            interfaces.append((linktype, _if_tsresol(body[8:], endian)))
        elif btype == 6 and len(body) >= 20:  # enhanced packet
            ifid, ts_hi, ts_lo, caplen, _orig = struct.unpack(endian + "IIIII", body[:20])
            if ifid < len(interfaces):
                linktype, unit = interfaces[ifid]
                yield ((ts_hi << 32) | ts_lo) * unit, linktype, body[20 : 20 + caplen]
        elif btype == 3 and len(body) >= 4 and interfaces:  # simple packet
            yield 0.0, interfaces[0][0], body[4:]


def _if_tsresol(options: bytes, endian: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack(endian + "HH", options[pos : pos + 4])
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        pos += 4 + ((length + 3) & ~3)
    return 1e-6


def _udp(ts: float, linktype: int, frame: bytes, stats: PcapStats) -> UdpDatagram | None:
    off = 0
    ethertype: int | None = None
    if linktype == LINK_ETHERNET:
        if len(frame) < 14:
            stats.skipped["short_frame"] += 1
            return None
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        off = 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:
            ethertype = struct.unpack_from("!H", frame, off + 2)[0]
            off += 4
    elif linktype == LINK_SLL:
        if len(frame) < 16:
            stats.skipped["short_frame"] += 1
            return None
        ethertype = struct.unpack_from("!H", frame, 14)[0]
        off = 16
    elif linktype == LINK_SLL2:
        if len(frame) < 20:
            stats.skipped["short_frame"] += 1
            return None
        ethertype = struct.unpack_from("!H", frame, 0)[0]
        off = 20
    elif linktype in (LINK_NULL, LINK_LOOP):
        off = 4
    elif linktype not in LINK_RAW:
        stats.skipped["linktype"] += 1
        return None
    if ethertype is None:
        if len(frame) <= off:
            stats.skipped["short_frame"] += 1
            return None
        ethertype = {4: 0x0800, 6: 0x86DD}.get(frame[off] >> 4, 0)
    if ethertype == 0x0800:
        return _ipv4(ts, frame, off, stats)
    if ethertype == 0x86DD:
        return _ipv6(ts, frame, off, stats)
    stats.skipped["not_ip"] += 1
    return None


def _ipv4(ts: float, frame: bytes, off: int, stats: PcapStats) -> UdpDatagram | None:
    if len(frame) < off + 20:
        stats.skipped["short_frame"] += 1
        return None
    ihl = (frame[off] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, off + 2)[0]
    flags_frag = struct.unpack_from("!H", frame, off + 6)[0]
    if frame[off + 9] != 17:
        stats.skipped["not_udp"] += 1
        return None
    if flags_frag & 0x3FFF:
        stats.skipped["fragment"] += 1
        return None
    src = ".".join(str(b) for b in frame[off + 12 : off + 16])
    dst = ".".join(str(b) for b in frame[off + 16 : off + 20])
    end = min(len(frame), off + total) if total else len(frame)
    return _udp_payload(ts, frame, off + ihl, end, src, dst, stats)


def _ipv6(ts: float, frame: bytes, off: int, stats: PcapStats) -> UdpDatagram | None:
    import ipaddress

    if len(frame) < off + 40:
        stats.skipped["short_frame"] += 1
        return None
    payload_len = struct.unpack_from("!H", frame, off + 4)[0]
    nxt = frame[off + 6]
    src = str(ipaddress.IPv6Address(frame[off + 8 : off + 24]))
    dst = str(ipaddress.IPv6Address(frame[off + 24 : off + 40]))
    end = min(len(frame), off + 40 + payload_len)
    pos = off + 40
    while nxt in (0, 43, 60) and pos + 8 <= end:
        nxt = frame[pos]
        pos += (frame[pos + 1] + 1) * 8
    if nxt == 44:
        stats.skipped["fragment"] += 1
        return None
    if nxt != 17:
        stats.skipped["not_udp"] += 1
        return None
    return _udp_payload(ts, frame, pos, end, src, dst, stats)


def _udp_payload(
    ts: float, frame: bytes, pos: int, end: int, src: str, dst: str, stats: PcapStats
) -> UdpDatagram | None:
    if pos + 8 > end:
        stats.skipped["short_frame"] += 1
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", frame, pos)
    stop = min(end, pos + ulen) if ulen >= 8 else end
    return UdpDatagram(ts, src, sport, dst, dport, bytes(frame[pos + 8 : stop]))
