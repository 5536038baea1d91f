"""The decoder → classifier boundary: a batch of flow records as one numpy structured array.

Every decoder (v5, v9, IPFIX, or a future Kafka consumer) produces a :class:`FlowBatch` with
exactly these columns, so classification never needs to know where the records came from.
Addresses are 128-bit numbers split in two unsigned 64-bit halves; IPv4 is stored as the
IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) so that one representation covers both families.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOW_DTYPE = np.dtype(
    [
        ("exporter", "u4"),  # index into FlowBatch.exporters
        ("version", "u2"),  # 5, 9 or 10
        ("protocol", "u1"),
        ("tcp_flags", "u1"),
        ("src_hi", "u8"),
        ("src_lo", "u8"),
        ("dst_hi", "u8"),
        ("dst_lo", "u8"),
        ("src_port", "u2"),
        ("dst_port", "u2"),  # ICMP: type << 8 | code, as NetFlow exporters do
        ("tos", "u1"),
        ("pad", "u1"),
        ("input_if", "u4"),
        ("output_if", "u4"),
        ("sampling", "u4"),  # the interval already applied to packets and octets
        ("packets", "u8"),
        ("octets", "u8"),
        ("first_ms", "i8"),  # UTC epoch milliseconds
        ("last_ms", "i8"),
    ]
)

V4_MAPPED_HI = np.uint64(0)
V4_MAPPED_PREFIX = np.uint64(0xFFFF << 32)
_LOW32 = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class FlowBatch:
    """Decoded flow records plus the exporters they came from (address, domain/source id)."""

    records: np.ndarray
    exporters: tuple[tuple[str, int], ...] = ()

    def __len__(self) -> int:
        return len(self.records)

    @staticmethod
    def empty() -> FlowBatch:
        return FlowBatch(np.zeros(0, FLOW_DTYPE), ())

    @staticmethod
    def concat(batches: Sequence[FlowBatch]) -> FlowBatch:
        """Join batches, re-indexing exporters so that equal (address, domain) share an index."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return FlowBatch.empty()
        if len(batches) == 1:
            return batches[0]
        index: dict[tuple[str, int], int] = {}
        parts = []
        for b in batches:
            remap = np.array([index.setdefault(e, len(index)) for e in b.exporters], dtype="u4")
            recs = b.records.copy()
            if len(remap):
                recs["exporter"] = remap[recs["exporter"]]
            parts.append(recs)
        return FlowBatch(np.concatenate(parts), tuple(index))

    def is_v4(self, which: str = "src") -> np.ndarray:
        r = self.records
        return (r[f"{which}_hi"] == V4_MAPPED_HI) & (
            (r[f"{which}_lo"] & ~_LOW32) == V4_MAPPED_PREFIX
        )

    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Records as plain dicts (for JSON output and evidence; not for the hot path)."""
        r = self.records
        for i in range(len(r)):
            rec = r[i]
            exp = self.exporters[int(rec["exporter"])] if self.exporters else ("", 0)
            yield {
                "exporter": exp[0],
                "observation_domain": exp[1],
                "version": int(rec["version"]),
                "src_addr": format_address(int(rec["src_hi"]), int(rec["src_lo"])),
                "dst_addr": format_address(int(rec["dst_hi"]), int(rec["dst_lo"])),
                "src_port": int(rec["src_port"]),
                "dst_port": int(rec["dst_port"]),
                "protocol": int(rec["protocol"]),
                "packets": int(rec["packets"]),
                "octets": int(rec["octets"]),
                "first_ms": int(rec["first_ms"]),
                "last_ms": int(rec["last_ms"]),
                "input_if": int(rec["input_if"]),
                "output_if": int(rec["output_if"]),
                "tcp_flags": int(rec["tcp_flags"]),
                "tos": int(rec["tos"]),
                "sampling": int(rec["sampling"]),
            }


def format_address(hi: int, lo: int) -> str:
    """Text form of a stored address: dotted quad for IPv4-mapped values, IPv6 otherwise."""
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def parse_address(text: str) -> tuple[int, int]:
    """(hi, lo) halves of an address in the batch representation."""
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return 0, (0xFFFF << 32) | int(addr)
    value = int(addr)
    return value >> 64, value & 0xFFFFFFFFFFFFFFFF
