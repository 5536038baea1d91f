"""recvmmsg receiver over real loopback sockets: payloads, sources and order are kept."""

from __future__ import annotations

import socket
import time

import pytest

from collector.netflow.recv import batch_receiver


@pytest.mark.parametrize(
    ("family", "host", "sources"),
    [(socket.AF_INET, "127.0.0.1", ["127.0.0.1", "127.0.0.2"]), (socket.AF_INET6, "::1", ["::1"])],
)
def test_batch_receiver_keeps_payloads_sources_and_order(
    family: socket.AddressFamily, host: str, sources: list[str]
) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.setblocking(False)
        rx = batch_receiver(sock, slots=8)
        assert rx is not None  # Linux with glibc: recvmmsg exists
        assert rx.receive() == []  # nothing waiting: no exception, empty
        sent: list[tuple[bytes, str]] = []
        for src in sources:
            with socket.socket(family, socket.SOCK_DGRAM) as out:
                out.bind((src, 0))
                for i in range(7):
                    payload = bytes([i]) * (i + 1) + src.encode()
                    out.sendto(payload, sock.getsockname()[:2])
                    sent.append((payload, src))
                out.sendto(b"\xab" * 60_000, sock.getsockname()[:2])  # near the UDP maximum
                sent.append((b"\xab" * 60_000, src))
        got: list[tuple[bytes, str]] = []
        deadline = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += rx.receive()  # at most 8 per call
        assert got == sent
        assert rx.truncated == 0
