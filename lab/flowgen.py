"""IPFIX datagrams crafted from scenario flows, sent to a collector on loopback.

The demo needs exactly chosen flows (a pharmacy terminal reaching an internet address at a
given time, through a given ingress interface); softflowd can only export what it sees in a
capture, so the lab builds the RFC 7011 messages itself. The encoding is the standard one the
collector's decoder is tested against (template set 2, one data set, absolute millisecond
times), not a private format."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

TEMPLATE_ID = 256
# sourceIPv4Address, destinationIPv4Address, sourceTransportPort, destinationTransportPort,
# protocolIdentifier, tcpControlBits, packetDeltaCount, octetDeltaCount,
# flowStartMilliseconds, flowEndMilliseconds, ingressInterface, egressInterface
V4_FIELDS: list[tuple[int, int]] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (2, 8),
    (1, 8),
    (152, 8),
    (153, 8),
    (10, 4),
    (14, 4),
]
_RECORD = struct.Struct("!4s4sHHBBQQQQII")
_MAX_PER_MESSAGE = 20  # keeps every datagram well under a 1500-byte MTU


@dataclass(frozen=True)
class Flow:
    """One IPv4 flow as an edge router would export it."""

    src: str
    dst: str
    dport: int
    sport: int = 40000
    proto: int = 6
    packets: int = 10
    octets: int = 4200
    input_if: int = 0
    output_if: int = 0
    end_ms: int | None = None  # default: now
    duration_ms: int = 4000


def _template_set() -> bytes:
    specs = b"".join(struct.pack("!HH", fid, size) for fid, size in V4_FIELDS)
    body = struct.pack("!HH", TEMPLATE_ID, len(V4_FIELDS)) + specs
    return struct.pack("!HH", 2, 4 + len(body)) + body


def _record(flow: Flow, now_ms: int) -> bytes:
    end = flow.end_ms if flow.end_ms is not None else now_ms
    return _RECORD.pack(
        socket.inet_aton(flow.src),
        socket.inet_aton(flow.dst),
        flow.sport,
        flow.dport,
        flow.proto,
        0x18 if flow.proto == 6 else 0,
        flow.packets,
        flow.octets,
        end - flow.duration_ms,
        end,
        flow.input_if,
        flow.output_if,
    )


def ipfix_messages(
    flows: Sequence[Flow], *, domain: int, first_sequence: int = 0, now: float | None = None
) -> list[bytes]:
    """IPFIX messages carrying ``flows``, each with the template so order never matters."""
    now_s = time.time() if now is None else now
    now_ms = int(now_s * 1000)
    out: list[bytes] = []
    seq = first_sequence
    template = _template_set()
    for i in range(0, len(flows), _MAX_PER_MESSAGE):
        chunk = flows[i : i + _MAX_PER_MESSAGE]
        records = b"".join(_record(f, now_ms) for f in chunk)
        data = struct.pack("!HH", TEMPLATE_ID, 4 + len(records)) + records
        body = template + data
        out.append(struct.pack("!HHIII", 10, 16 + len(body), int(now_s), seq, domain) + body)
        seq += len(chunk)
    return out


@dataclass
class FlowExporter:
    """Sends crafted IPFIX from ``source`` (a loopback address) to a collector; keeps the
    per-domain sequence numbers a real exporter keeps, so the collector sees no loss."""

    collector: tuple[str, int]
    source: str = "127.0.0.1"
    _sequence: dict[int, int] = field(default_factory=dict)

    def send(self, flows: Sequence[Flow], *, domain: int) -> int:
        """Send ``flows`` as observation domain ``domain``; returns the datagrams sent."""
        host, _ = self.collector
        if not (host.startswith("127.") or host == "::1"):
            raise ValueError(f"the lab only sends to loopback, not {host}")
        messages = ipfix_messages(
            flows, domain=domain, first_sequence=self._sequence.get(domain, 0)
        )
        self._sequence[domain] = self._sequence.get(domain, 0) + len(flows)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.source, 0))
            for msg in messages:
                sock.sendto(msg, self.collector)
        return len(messages)
