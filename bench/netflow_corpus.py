"""Benchmark corpus: a synthetic capture exported by Debian's softflowd (v5, v9, IPFIX).

v9 sets are re-padded to 4 bytes (a legal re-encoding) because the PyPI ``netflow`` baseline
raises on softflowd's unpadded v9; every decoder then reads exactly the same bytes."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

from lab.softflowd import export_pcap


def _frame(src: str, dst: str, proto: int, sport: int, dport: int, size: int) -> bytes:
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 65535, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8 + size, 0)
    else:
        l4 = struct.pack("!BBHI", 8 if fam == socket.AF_INET else 128, 0, 0, 0)
    l4 += b"\0" * size
    if fam == socket.AF_INET6:
        ip = struct.pack("!IHBB", 6 << 28, len(l4), 58 if proto == 1 else proto, 64)
        ethertype = 0x86DD
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0)
        ethertype = 0x0800
    ip += socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
    return b"\2\0\0\0\0\1\2\0\0\0\0\2" + struct.pack("!H", ethertype) + ip + l4


def write_capture(path: Path, flows: int, seed: int = 7, block: int = 64) -> None:
    """``flows`` distinct flows of 1-3 packets: mostly IPv4 TCP/UDP, some IPv6 and ICMP.

    The flow type is drawn per ``block`` of consecutive source addresses, the way one subnet's
    traffic clusters; softflowd then writes sets of one template as a router does. With
    ``block=1`` every flow draws its type and softflowd emits sets of 2-4 records."""
    rnd = random.Random(seed)
    kind = 0.0
    t0 = 1_700_000_000.0
    ports = [443, 80, 3389, 5938, 1194, 51820, 500, 53, 8080, 22]
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(flows):
            if i % block == 0:
                kind = rnd.random()
            if kind < 0.1:
                src, dst = f"2001:db8:{i % 4096:x}::{i % 65000 + 1:x}", "2001:db8:ffff::1"
            else:
                src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"
                dst = f"{rnd.choice([203, 198, 10, 172])}.{rnd.randrange(256)}.0.{i % 250 + 1}"
            proto = 1 if kind > 0.95 else rnd.choice([6, 6, 17])
            sport, dport = 1024 + i % 60000, rnd.choice(ports)
            for k in range(1 + i % 3):
                data = _frame(src, dst, proto, sport, dport, rnd.randrange(0, 200))
                ts = t0 + i * 0.0001 + k * 0.01
                sec = int(ts)
                fh.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(data), len(data)))
                fh.write(data)


def softflowd_datagrams(pcap: Path, version: int) -> list[bytes]:
    out = export_pcap(pcap, version, "-6", "-a", max_flows=2_000_000, rcvbuf=256 << 20, timeout=600)
    return [pad_v9(d) for d in out] if version == 9 else out


def pad_v9(data: bytes) -> bytes:
    """Re-encode a v9 datagram with every set padded to a multiple of 4 bytes."""
    out = bytearray(data[:20])
    off = 20
    while off + 4 <= len(data):
        sid, slen = struct.unpack_from("!HH", data, off)
        if slen < 4 or off + slen > len(data):
            break
        body = data[off + 4 : off + slen]
        body += b"\0" * (-len(body) % 4)
        out += struct.pack("!HH", sid, 4 + len(body)) + body
        off += slen
    return bytes(out)


def corpus(flows: int, cache_dir: Path, block: int = 64) -> dict[int, list[bytes]]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    pcap = cache_dir / f"flows-{flows}-b{block}.pcap"
    if not pcap.exists():
        write_capture(pcap, flows, block=block)
    return {v: softflowd_datagrams(pcap, v) for v in (5, 9, 10)}
