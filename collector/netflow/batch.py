"""The decoder → classifier boundary: a batch of flow records as numpy columns.

Every decoder (v5, v9, IPFIX, or a future Kafka consumer) produces a :class:`FlowBatch` with
exactly the columns of :data:`FLOW_DTYPE`, so classification never needs to know where the
records came from. The columns are separate contiguous arrays (not one structured array):
decoders write them straight from the wire and the classifier reads them without strided
access; :attr:`FlowBatch.records` assembles the structured form for the cold paths (JSON,
evidence). Addresses are 128-bit numbers split in two unsigned 64-bit halves; IPv4 is stored
as the IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) so one representation covers both
families.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
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


COLUMNS: tuple[str, ...] = tuple(n for n in FLOW_DTYPE.names or () if n != "pad")


@dataclass(frozen=True, slots=True)
class FlowBatch:
    """Decoded flow records (one array per column) plus the exporters they came from.

    ``all_v4`` is the decoder's promise that every address is IPv4 (lets the classifier skip
    the family test); False means "unknown or mixed"."""

    columns: Mapping[str, np.ndarray]
    exporters: tuple[tuple[str, int], ...] = ()
    all_v4: bool = False

    def __len__(self) -> int:
        return len(self.columns["version"]) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @staticmethod
    def empty() -> FlowBatch:
        return FlowBatch({n: np.zeros(0, FLOW_DTYPE[n]) for n in COLUMNS}, ())

    @staticmethod
    def from_records(records: np.ndarray, exporters: Sequence[tuple[str, int]] = ()) -> FlowBatch:
        """A batch from a FLOW_DTYPE structured array (columns are copied contiguous)."""
        cols = {n: np.ascontiguousarray(records[n]) for n in COLUMNS}
        return FlowBatch(cols, tuple(exporters))

    @property
    def records(self) -> np.ndarray:
        """The records as one FLOW_DTYPE structured array (a copy; not for the hot path)."""
        return self.take(slice(None))

    def take(self, rows: Any) -> np.ndarray:
        """Selected rows (index array, mask or slice) as a FLOW_DTYPE structured array."""
        first = self.columns["version"][rows] if self.columns else np.zeros(0)
        out = np.zeros(len(first), FLOW_DTYPE)
        for n in COLUMNS:
            out[n] = self.columns[n][rows]
        return out

    def select(self, rows: Any) -> FlowBatch:
        """A batch of the selected rows (same exporters)."""
        return FlowBatch({n: c[rows] for n, c in self.columns.items()}, self.exporters, self.all_v4)

    @staticmethod
    def concat(batches: Sequence[FlowBatch]) -> FlowBatch:
        """Join batches, re-indexing exporters so that equal (address, domain) share an index."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return FlowBatch.empty()
        if len(batches) == 1:
            return batches[0]
        index: dict[tuple[str, int], int] = {}
        remapped = []
        for b in batches:
            remap = np.array([index.setdefault(e, len(index)) for e in b.exporters], dtype="u4")
            exp = b.columns["exporter"]
            remapped.append(remap[exp] if len(remap) else exp)
        cols = {n: np.concatenate([b.columns[n] for b in batches]) for n in COLUMNS}
        cols["exporter"] = np.concatenate(remapped)
        return FlowBatch(cols, tuple(index), all(b.all_v4 for b in batches))

    def is_v4(self, which: str = "src") -> np.ndarray:
        if self.all_v4:
            return np.ones(len(self), bool)
        c = self.columns
        return (c[f"{which}_hi"] == V4_MAPPED_HI) & (
            (c[f"{which}_lo"] & ~_LOW32) == V4_MAPPED_PREFIX
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
