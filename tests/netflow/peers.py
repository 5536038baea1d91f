"""Helpers for NetFlow tests: a fast pcap writer, softflowd as exporter, nfcapd/nfdump as the
independent decoder. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.softflowd import SOFTFLOWD, export_pcap

NFCAPD = shutil.which("nfcapd") or "/usr/bin/nfcapd"
NFDUMP = shutil.which("nfdump") or "/usr/bin/nfdump"

needs_peers = pytest.mark.skipif(
    not (os.path.exists(SOFTFLOWD) and os.path.exists(NFCAPD)),
    reason="Debian softflowd and nfdump are required",
)


@dataclass(frozen=True)
class Pkt:
    """One packet of a synthetic capture."""

    ts: float
    src: str
    dst: str
    proto: int  # 6, 17, 1 (ICMP) or 58 (ICMPv6)
    sport: int = 0  # ICMP: type
    dport: int = 0  # ICMP: code
    payload: int = 0
    flags: int = 0x02


def _ip_bytes(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def frame(p: Pkt) -> bytes:
    """Ethernet frame for a packet (checksums left zero: softflowd does not check them)."""
    body = b"\x00" * p.payload
    if p.proto == 6:
        l4 = struct.pack("!HHIIBBHHH", p.sport, p.dport, 1, 0, 0x50, p.flags, 65535, 0, 0)
    elif p.proto == 17:
        l4 = struct.pack("!HHHH", p.sport, p.dport, 8 + len(body), 0)
    else:
        l4 = struct.pack("!BBHI", p.sport, p.dport, 0, 0)
    l4 += body
    if ":" in p.src:
        ip = struct.pack("!IHBB", 6 << 28, len(l4), p.proto, 64)
        ip += _ip_bytes(p.src) + _ip_bytes(p.dst)
        ethertype = 0x86DD
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, p.proto, 0)
        ip += _ip_bytes(p.src) + _ip_bytes(p.dst)
        ethertype = 0x0800
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02" + struct.pack("!H", ethertype)
    return eth + ip + l4


def write_pcap(path: Path, packets: Iterable[Pkt]) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for p in packets:
            data = frame(p)
            sec = int(p.ts)
            usec = round((p.ts - sec) * 1e6)
            fh.write(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)


def write_udp_pcap(path: Path, datagrams: Iterable[tuple[bytes, str]], port: int = 2055) -> None:
    """A capture of NetFlow datagrams as tcpdump would write it (Ethernet/IPv4/UDP)."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, (payload, src) in enumerate(datagrams):
            udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
            ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0)
            ip += _ip_bytes(src) + _ip_bytes("127.0.0.1")
            data = b"\x02" + b"\x00" * 11 + b"\x08\x00" + ip + udp
            fh.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(data), len(data)) + data)


def scenario_packets(n_flows: int = 60, t0: float = 1_700_000_000.0) -> list[Pkt]:
    """TCP, UDP, ICMP over IPv4 and IPv6, several packets per flow, some big counts."""
    pkts: list[Pkt] = []
    for i in range(n_flows):
        t = t0 + i * 0.05
        src = f"10.1.{i % 7}.{i % 250 + 1}"
        dst = f"203.0.113.{i % 11 + 1}"
        dport = [443, 3389, 5900, 80, 5938][i % 5]
        for k in range(1 + i % 4):
            pkts.append(Pkt(t + k * 0.3, src, dst, 6, 40000 + i, dport, payload=10 * i, flags=0x18))
        pkts.append(Pkt(t + 0.01, dst, src, 6, dport, 40000 + i, flags=0x12))
        if i % 3 == 0:
            pkts.append(
                Pkt(
                    t + 0.02,
                    f"10.2.0.{i % 250 + 1}",
                    "198.51.100.9",
                    17,
                    5000 + i,
                    [1194, 51820, 500, 4500, 1701][i % 5],
                    payload=100 + i,
                )
            )
        if i % 4 == 0:
            pkts.append(
                Pkt(
                    t + 0.03,
                    f"2001:db8::{i + 1:x}",
                    "2001:db8:ffff::1",
                    17,
                    6000 + i,
                    53,
                    payload=i,
                )
            )
            pkts.append(Pkt(t + 0.04, f"2001:db8::{i + 1:x}", "2001:db8:ffff::2", 58, 128, 0))
        if i % 5 == 0:
            pkts.append(Pkt(t + 0.05, f"10.3.0.{i % 250 + 1}", "198.51.100.10", 1, 8, 0))
    pkts.sort(key=lambda p: p.ts)
    return pkts


def _rx_queue(port: int) -> int | None:
    """Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:port."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as fh:
        for line in fh.readlines()[1:]:
            cols = line.split()
            if cols[1] == want:
                return int(cols[4].split(":")[1], 16)
    return None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def softflowd_export(pcap: Path, version: int, *extra: str) -> list[bytes]:
    """Run softflowd over a pcap and return the datagrams it exported to our socket."""
    return export_pcap(pcap, version, *extra)


def nfdump_decode(datagrams: list[bytes], *extra: str) -> list[dict]:
    """Feed datagrams to nfcapd over loopback and return nfdump's JSON records."""
    port = free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [NFCAPD, "-w", tmp, "-p", str(port), "-b", "127.0.0.1", "-B", str(16 << 20), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 10
            while _rx_queue(port) is None:
                assert time.monotonic() < deadline, "nfcapd did not bind"
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.02)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for d in datagrams:
                    s.sendto(d, ("127.0.0.1", port))
            deadline = time.monotonic() + 10
            while _rx_queue(port):
                assert time.monotonic() < deadline, "nfcapd did not drain its socket"
                time.sleep(0.02)
            time.sleep(0.2)
        finally:
            proc.terminate()
            log = proc.communicate(timeout=20)[0].decode(errors="replace")
        files = sorted(glob.glob(f"{tmp}/nfcapd.*"))
        assert files, log
        env = dict(os.environ, TZ="UTC")
        out = subprocess.run(
            [NFDUMP, "-r", files[-1], "-o", "json"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        ).stdout
    return json.loads(out) if out.strip() else []
