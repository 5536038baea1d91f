"""Fold classified flow records into per-key aggregates with bounded memory.

Key: (institution, kind, source, destination, destination port, protocol). Grouping, sums and
evidence are vectorized (``np.unique`` + ``ufunc.at`` into slot arrays); per batch, Python
only looks each distinct key up in a dict (at ~1M records/s the old per-key objects were the
listener's bottleneck).
At most ``max_keys`` aggregates are held between flushes and each keeps at most
``sample_size`` raw records as evidence; flows for keys beyond the limit are counted in
``dropped_flows``, never silently lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collector.netflow.batch import FLOW_DTYPE, FlowBatch, format_address
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

# Kinds about a source address alone: folded per (institution, kind, source) with destination,
# port and protocol zeroed in the key, so an unallocated host talking to many peers is one
# observation (one finding), not one per peer. The evidence sample keeps the real records.
PER_SOURCE_KINDS = frozenset({"unauthorized_ip"})
_PER_SOURCE_CODES = np.array([KINDS.index(k) for k in sorted(PER_SOURCE_KINDS)], np.uint8)


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
    """Aggregates held as numpy columns indexed by slot; a dict maps key bytes to slots.

    Python work per batch is one dict lookup per distinct key (plus a few appends for keys
    seen for the first time); sums, times and evidence samples are array operations.
    Addresses are formatted and Aggregate objects built only in :meth:`drain`, once per
    key per flush."""

    _keys: np.ndarray
    _link: np.ndarray
    _exporter: np.ndarray
    _flows: np.ndarray
    _packets: np.ndarray
    _octets: np.ndarray
    _first: np.ndarray
    _last: np.ndarray
    _nsample: np.ndarray
    _samples: np.ndarray

    def __init__(self, max_keys: int = 100_000, sample_size: int = 5) -> None:
        self.max_keys = max_keys
        self.sample_size = sample_size
        self.dropped_flows = 0
        self._reset()

    def _reset(self, capacity: int = 1024) -> None:
        self._slots: dict[bytes, int] = {}
        self._exporters: dict[tuple[str, int], int] = {}
        self._exporter_list: list[tuple[str, int]] = []
        self._n = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        old = getattr(self, "_keys", None)  # None on the first call
        n = self._n
        cols: dict[str, np.ndarray] = {
            "_keys": np.zeros(capacity, _KEY_DTYPE),
            "_link": np.zeros(capacity, np.int64),
            "_exporter": np.zeros(capacity, np.uint32),
            "_flows": np.zeros(capacity, np.uint64),
            "_packets": np.zeros(capacity, np.uint64),
            "_octets": np.zeros(capacity, np.uint64),
            "_first": np.zeros(capacity, np.int64),
            "_last": np.zeros(capacity, np.int64),
            "_nsample": np.zeros(capacity, np.uint8),
            "_samples": np.zeros((capacity, self.sample_size), FLOW_DTYPE),
        }
        for name, arr in cols.items():
            if old is not None and n:
                arr[:n] = getattr(self, name)[:n]
            setattr(self, name, arr)

    def __len__(self) -> int:
        return self._n

    def fold(self, batch: FlowBatch, candidates: np.ndarray) -> None:
        if not len(candidates):
            return
        recs = batch.take(candidates["row"])
        gexp = np.array([self._exporter_id(e) for e in batch.exporters] or [0], dtype=np.uint32)
        recs["exporter"] = gexp[recs["exporter"]]
        keys = np.empty(len(recs), _KEY_DTYPE)
        keys["institution"] = candidates["institution"]
        keys["kind"] = candidates["kind"]
        for name in ("src_hi", "src_lo", "dst_hi", "dst_lo", "dst_port", "protocol"):
            keys[name] = recs[name]
        per_source = np.isin(keys["kind"], _PER_SOURCE_CODES)
        if per_source.any():
            for name in ("dst_hi", "dst_lo", "dst_port", "protocol"):
                keys[name][per_source] = 0
        uniq, first_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        slots = self._lookup(uniq, first_idx, recs, candidates["link"])
        ok = slots >= 0
        if not ok.all():
            self.dropped_flows += int(np.bincount(inverse, minlength=len(uniq))[~ok].sum())
        rec_slot = slots[inverse]
        kept = rec_slot >= 0
        if not kept.any():
            return
        rs = rec_slot[kept]
        np.add.at(self._flows, rs, 1)
        np.add.at(self._packets, rs, recs["packets"][kept])
        np.add.at(self._octets, rs, recs["octets"][kept])
        np.minimum.at(self._first, rs, recs["first_ms"][kept])
        np.maximum.at(self._last, rs, recs["last_ms"][kept])
        # evidence: the first record of each key in this batch, while the sample has room
        s = slots[ok]
        rows = first_idx[ok]
        room = self._nsample[s] < self.sample_size
        s, rows = s[room], rows[room]
        self._samples[s, self._nsample[s]] = recs[rows]
        self._nsample[s] += 1

    def _exporter_id(self, exporter: tuple[str, int]) -> int:
        got = self._exporters.get(exporter)
        if got is None:
            got = self._exporters[exporter] = len(self._exporter_list)
            self._exporter_list.append(exporter)
        return got

    def _lookup(
        self, uniq: np.ndarray, first_idx: np.ndarray, recs: np.ndarray, links: np.ndarray
    ) -> np.ndarray:
        """Slot of each distinct key (new slots for new keys; -1 beyond ``max_keys``)."""
        get = self._slots.get
        raw = uniq.view(np.dtype((np.void, _KEY_DTYPE.itemsize))).tolist()
        slots = np.array([get(k, -1) for k in raw], dtype=np.int64)
        new = np.flatnonzero(slots < 0)
        if not len(new):
            return slots
        room = max(0, self.max_keys - self._n)
        new = new[:room]
        if not len(new):
            return slots
        start = self._n
        end = start + len(new)
        if end > len(self._keys):
            self._alloc(min(self.max_keys, max(end, 2 * len(self._keys))))
        for i, g in enumerate(new.tolist()):
            self._slots[raw[g]] = start + i
        fresh = np.arange(start, end)
        slots[new] = fresh
        rows = first_idx[new]
        self._keys[fresh] = uniq[new]
        self._link[fresh] = links[rows]
        self._exporter[fresh] = recs["exporter"][rows]
        self._flows[fresh] = 0
        self._packets[fresh] = 0
        self._octets[fresh] = 0
        self._first[fresh] = np.iinfo(np.int64).max
        self._last[fresh] = np.iinfo(np.int64).min
        self._nsample[fresh] = 0
        self._n = end
        return slots

    def drain(self) -> list[Aggregate]:
        """Everything folded since the last drain, as Aggregates; the state starts empty."""
        return self.detach().slice(0, None)

    def detach(self) -> Drained:
        """Hand the folded state over as arrays (cheap) and start empty; Aggregate objects
        are built later, a slice at a time, so a large flush never holds them all."""
        n = self._n
        out = Drained(
            {
                name: getattr(self, name)[:n]
                for name in (
                    "_keys",
                    "_link",
                    "_exporter",
                    "_first",
                    "_last",
                    "_flows",
                    "_packets",
                    "_octets",
                    "_nsample",
                    "_samples",
                )
            },
            list(self._exporter_list),
        )
        self._reset()
        return out


class Drained:
    """Aggregates detached from an :class:`Aggregator`, still as numpy columns."""

    def __init__(self, cols: dict[str, np.ndarray], exporters: list[tuple[str, int]]) -> None:
        self.cols = cols
        self.exporters = exporters

    def __len__(self) -> int:
        return len(self.cols["_keys"])

    def chunks(self, size: int) -> Iterator[list[Aggregate]]:
        for start in range(0, len(self), size):
            yield self.slice(start, start + size)

    def slice(self, start: int, stop: int | None) -> list[Aggregate]:
        c = self.cols
        exporters = self.exporters
        samples = c["_samples"][start:stop]
        keys = c["_keys"][start:stop].tolist()
        cols = [
            c[name][start:stop].tolist()
            for name in (
                "_link",
                "_exporter",
                "_first",
                "_last",
                "_flows",
                "_packets",
                "_octets",
                "_nsample",
            )
        ]
        out: list[Aggregate] = []
        for i, (inst, kind, shi, slo, dhi, dlo, port, proto) in enumerate(keys):
            link, exp, first, last, flows, packets, octets, nsample = (col[i] for col in cols)
            out.append(
                Aggregate(
                    inst,
                    KINDS[kind],
                    format_address(shi, slo),
                    format_address(dhi, dlo),
                    port,
                    proto,
                    link_id=link if link >= 0 else None,
                    exporter=exporters[exp],
                    first_ms=first,
                    last_ms=last,
                    flows=flows,
                    packets=packets,
                    octets=octets,
                    sample=[_evidence(exporters, samples[i, j]) for j in range(nsample)],
                )
            )
        return out


def _evidence(exporters: list[tuple[str, int]], r: np.void) -> dict[str, Any]:
    exporter = exporters[int(r["exporter"])]
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
