"""Run Debian's softflowd over a pcap (``-r`` mode) and collect what it exports.

The one real NetFlow exporter the tests and the benchmarks share. In ``-r`` mode softflowd
sends everything in one burst at the end of the file, so the receiving socket gets a large
buffer (SO_RCVBUFFORCE as root), and ``-m`` is raised so flows are not expired early
(see ../shared/LAB.md)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SOFTFLOWD = shutil.which("softflowd") or "/usr/sbin/softflowd"
SO_RCVBUFFORCE = 33


def big_socket(sock: socket.socket, size: int = 64 << 20) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)  # root only
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def export_pcap(
    pcap: Path,
    version: int,
    *extra: str,
    max_flows: int = 500_000,
    rcvbuf: int = 64 << 20,
    timeout: float = 120,
) -> list[bytes]:
    """The datagrams softflowd exports for ``pcap`` as NetFlow ``version`` (5, 9 or 10)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        big_socket(sock, rcvbuf)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    SOFTFLOWD,
                    "-r",
                    str(pcap),
                    "-n",
                    f"127.0.0.1:{port}",
                    "-v",
                    str(version),
                    "-m",
                    str(max_flows),
                    "-p",
                    f"{tmp}/pid",
                    *extra,
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
        out: list[bytes] = []
        sock.setblocking(False)
        while True:
            try:
                out.append(sock.recv(65535))
            except BlockingIOError:
                return out
    finally:
        sock.close()
