"""Fold classified flow records into per-key aggregates with bounded memory.

Key: (institution, kind, source, destination, destination port, protocol). Within a batch the
grouping is vectorized (``np.unique`` + ``np.add.at``); only distinct keys reach Python.
At most ``max_keys`` aggregates are held between flushes and each keeps at most
``sample_size`` raw records as evidence; flows for keys beyond the limit are counted in
``dropped_flows``, never silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collector.netflow.batch import FlowBatch, format_address
from collector.netflow.classify import KINDS

_KEY_DTYPE = np.dtype(
    [
        ("institution", "i8"),
        ("kind", "u1"),
        ("src_hi", "u8"),
        ("src_lo", "u8"),
        ("dst_hi", "u8"),
        ("dst_lo", "u8"),
        ("dst_port", "u2"),
        ("protocol", "u1"),
    ]
)

AggKey = tuple[int, str, str, str, int, int]  # institution, kind, src, dst, dst_port, protocol


@dataclass
class Aggregate:
    institution_id: int
    kind: str
    src_addr: str
    dst_addr: str
    dst_port: int
    protocol: int
    link_id: int | None
    exporter: tuple[str, int]
    first_ms: int
    last_ms: int
    flows: int = 0
    packets: int = 0
    octets: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> AggKey:
        return (
            self.institution_id,
            self.kind,
            self.src_addr,
            self.dst_addr,
            self.dst_port,
            self.protocol,
        )


class Aggregator:
    def __init__(self, max_keys: int = 100_000, sample_size: int = 5) -> None:
        self.max_keys = max_keys
        self.sample_size = sample_size
        self.entries: dict[AggKey, Aggregate] = {}
        self.dropped_flows = 0

    def fold(self, batch: FlowBatch, candidates: np.ndarray) -> None:
        if not len(candidates):
            return
        recs = batch.take(candidates["row"])
        keys = np.empty(len(recs), _KEY_DTYPE)
        keys["institution"] = candidates["institution"]
        keys["kind"] = candidates["kind"]
        for name in ("src_hi", "src_lo", "dst_hi", "dst_lo", "dst_port", "protocol"):
            keys[name] = recs[name]
        uniq, first_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        k = len(uniq)
        flows = np.bincount(inverse, minlength=k)
        packets = np.zeros(k, np.uint64)
        octets = np.zeros(k, np.uint64)
        np.add.at(packets, inverse, recs["packets"])
        np.add.at(octets, inverse, recs["octets"])
        first = np.full(k, np.iinfo(np.int64).max, np.int64)
        last = np.full(k, np.iinfo(np.int64).min, np.int64)
        np.minimum.at(first, inverse, recs["first_ms"])
        np.maximum.at(last, inverse, recs["last_ms"])
        links = candidates["link"]
        for g in range(k):
            u = uniq[g]
            row = int(first_idx[g])
            key: AggKey = (
                int(u["institution"]),
                KINDS[int(u["kind"])],
                format_address(int(u["src_hi"]), int(u["src_lo"])),
                format_address(int(u["dst_hi"]), int(u["dst_lo"])),
                int(u["dst_port"]),
                int(u["protocol"]),
            )
            entry = self.entries.get(key)
            if entry is None:
                if len(self.entries) >= self.max_keys:
                    self.dropped_flows += int(flows[g])
                    continue
                exporter = batch.exporters[int(recs["exporter"][row])]
                link = int(links[row])
                entry = self.entries[key] = Aggregate(
                    *key,
                    link_id=link if link >= 0 else None,
                    exporter=exporter,
                    first_ms=int(first[g]),
                    last_ms=int(last[g]),
                )
            entry.flows += int(flows[g])
            entry.packets += int(packets[g])
            entry.octets += int(octets[g])
            entry.first_ms = min(entry.first_ms, int(first[g]))
            entry.last_ms = max(entry.last_ms, int(last[g]))
            if len(entry.sample) < self.sample_size:
                entry.sample.append(_evidence(batch, recs, row))

    def drain(self) -> list[Aggregate]:
        out = list(self.entries.values())
        self.entries = {}
        return out


def _evidence(batch: FlowBatch, recs: np.ndarray, row: int) -> dict[str, Any]:
    r = recs[row]
    exporter = batch.exporters[int(r["exporter"])]
    return {
        "exporter": exporter[0],
        "observation_domain": exporter[1],
        "version": int(r["version"]),
        "src_addr": format_address(int(r["src_hi"]), int(r["src_lo"])),
        "dst_addr": format_address(int(r["dst_hi"]), int(r["dst_lo"])),
        "src_port": int(r["src_port"]),
        "dst_port": int(r["dst_port"]),
        "protocol": int(r["protocol"]),
        "packets": int(r["packets"]),
        "octets": int(r["octets"]),
        "first_ms": int(r["first_ms"]),
        "last_ms": int(r["last_ms"]),
        "input_if": int(r["input_if"]),
        "output_if": int(r["output_if"]),
        "tcp_flags": int(r["tcp_flags"]),
        "sampling": int(r["sampling"]),
    }
