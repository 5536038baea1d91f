"""Hand-built NetFlow v5 / v9 / IPFIX datagrams for targeted decoder tests."""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

# A typical IPv4 template with absolute millisecond times (the lab's exporter sends it too).
from lab.flowgen import V4_FIELDS as V4_FIELDS

EXPORT_SECS = 1_700_000_000


def v5(
    records: Sequence[dict],
    *,
    uptime: int = 100_000,
    secs: int = EXPORT_SECS,
    nsecs: int = 0,
    seq: int = 0,
    count: int | None = None,
    sampling: int = 0,
) -> bytes:
    head = struct.pack(
        "!HHIIIIBBH",
        5,
        len(records) if count is None else count,
        uptime,
        secs,
        nsecs,
        seq,
        0,
        0,
        sampling,
    )
    body = b""
    for r in records:
        body += struct.pack(
            "!4s4s4sHHIIIIHHBBBBHHBBH",
            socket.inet_aton(r.get("src", "10.0.0.1")),
            socket.inet_aton(r.get("dst", "8.8.8.8")),
            b"\0\0\0\0",
            r.get("input_if", 1),
            r.get("output_if", 2),
            r.get("packets", 1),
            r.get("octets", 100),
            r.get("first", 50_000),
            r.get("last", 60_000),
            r.get("sport", 1234),
            r.get("dport", 443),
            0,
            r.get("flags", 0x10),
            r.get("proto", 6),
            0,
            0,
            0,
            0,
            0,
            0,
        )
    return head + body


def field_specs(fields: Sequence[tuple[int, int] | tuple[int, int, int]], ipfix: bool) -> bytes:
    out = b""
    for f in fields:
        if len(f) == 3 and ipfix:
            out += struct.pack("!HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack("!HH", f[0], f[1])
    return out


def template_set(tid: int, fields: Sequence, *, ipfix: bool = True) -> bytes:
    body = struct.pack("!HH", tid, len(fields)) + field_specs(fields, ipfix)
    return struct.pack("!HH", 2 if ipfix else 0, 4 + len(body)) + body


def options_template_set(tid: int, scope: Sequence, options: Sequence, *, ipfix: bool) -> bytes:
    if ipfix:
        body = struct.pack("!HHH", tid, len(scope) + len(options), len(scope))
        body += field_specs(list(scope) + list(options), True)
        sid = 3
    else:
        body = struct.pack("!HHH", tid, 4 * len(scope), 4 * len(options))
        body += field_specs(list(scope) + list(options), False)
        sid = 1
    body += b"\0" * (-len(body) % 4)
    return struct.pack("!HH", sid, 4 + len(body)) + body


def withdrawal_set(tid: int) -> bytes:
    return struct.pack("!HHHH", 2, 8, tid, 0)


def data_set(tid: int, records: Sequence[bytes], pad: bool = True) -> bytes:
    body = b"".join(records)
    if pad:
        body += b"\0" * (-len(body) % 4)
    return struct.pack("!HH", tid, 4 + len(body)) + body


def ipfix(
    sets: Sequence[bytes],
    *,
    seq: int = 0,
    domain: int = 0,
    secs: int = EXPORT_SECS,
    length: int | None = None,
) -> bytes:
    body = b"".join(sets)
    total = 16 + len(body) if length is None else length
    return struct.pack("!HHIII", 10, total, secs, seq, domain) + body


def v9(
    sets: Sequence[bytes],
    *,
    seq: int = 0,
    source_id: int = 0,
    uptime: int = 100_000,
    secs: int = EXPORT_SECS,
) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), uptime, secs, seq, source_id) + b"".join(sets)


def v4_record(
    src: str = "10.0.0.1",
    dst: str = "8.8.8.8",
    sport: int = 1234,
    dport: int = 443,
    proto: int = 6,
    packets: int = 3,
    octets: int = 300,
    first: int = EXPORT_SECS * 1000 - 5000,
    last: int = EXPORT_SECS * 1000 - 1000,
    input_if: int = 7,
    output_if: int = 9,
) -> bytes:
    return struct.pack(
        "!4s4sHHBBQQQQII",
        socket.inet_aton(src),
        socket.inet_aton(dst),
        sport,
        dport,
        proto,
        0x18,
        packets,
        octets,
        first,
        last,
        input_if,
        output_if,
    )
