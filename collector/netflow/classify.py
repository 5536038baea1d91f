"""Vectorized classification of a :class:`FlowBatch` against inventory and policy data.

Prefix lookups use sorted interval tables (``np.searchsorted``) built once per inventory
change: allocations → institution, backbone prefixes, policy ignore list. Signatures are
(protocol, port) sets tested with ``np.isin``. IPv4 keys are the 32-bit address; IPv6 keys are
the upper 64 bits, so IPv6 prefixes longer than /64 are widened to their /64 (allocations to
institutions are /64 or shorter in practice).

Kinds (DESIGN.md): ``outbound_internet`` (source in an institution's allocation, destination
outside the backbone), ``remote_control`` / ``internet_vpn`` (an outbound flow matching a policy
signature), ``unauthorized_ip`` (source not allocated to the institution of the ingress link,
when the ingress link is known from (exporter, input ifIndex)). Flows touching an ignored
address never count.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from collector.netflow.batch import FlowBatch

log = logging.getLogger(__name__)

KINDS = ("outbound_internet", "remote_control", "internet_vpn", "unauthorized_ip")
KIND_CODE = {k: i for i, k in enumerate(KINDS)}

CANDIDATE_DTYPE = np.dtype([("row", "i8"), ("kind", "u1"), ("institution", "i8"), ("link", "i8")])

_U32 = np.uint64(0xFFFFFFFF)


class IntervalTable:
    """Non-overlapping [start, end] ranges → int value; most specific prefix wins."""

    def __init__(self, v4: Sequence[tuple[int, int, int]], v6: Sequence[tuple[int, int, int]]):
        self.v4 = _build(v4)
        self.v6 = _build(v6)

    @classmethod
    def from_prefixes(cls, items: Iterable[tuple[str, int]]) -> IntervalTable:
        v4: list[tuple[int, int, int, object]] = []
        v6: list[tuple[int, int, int, object]] = []
        for text, value in items:
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                log.warning("ignoring bad prefix %r", text)
                continue
            if net.version == 4:
                v4.append((int(net.network_address), int(net.broadcast_address), value, net))
            else:
                plen = min(net.prefixlen, 64)
                if net.prefixlen > 64:
                    log.warning("IPv6 prefix %s widened to /64 for lookup", net)
                start = int(net.network_address) >> 64
                end = start | ((1 << (64 - plen)) - 1)
                v6.append((start, end, value, net))
        return cls(_by_specificity(v4), _by_specificity(v6))

    def empty(self) -> bool:
        return self.v4 is None and self.v6 is None

    def lookup(self, keys: _Keys) -> np.ndarray:
        """Value per record for one side's addresses; -1 where no range covers it."""
        if keys.all_v4:
            if self.v4 is None:
                return np.full(len(keys.v4), -1, np.int64)
            return _find(self.v4, keys.v4)
        out = np.full(len(keys.v4), -1, np.int64)
        if self.v4 is not None:
            out = np.where(keys.is_v4, _find(self.v4, keys.v4), out)
        if self.v6 is not None:
            out = np.where(keys.is_v4, out, _find(self.v6, keys.v6))
        return out


@dataclass
class _Keys:
    """Lookup keys of one side (src or dst) of a batch, computed once per batch."""

    is_v4: np.ndarray
    all_v4: bool
    v4: np.ndarray
    v6: np.ndarray

    @classmethod
    def of(cls, batch: FlowBatch, which: str) -> _Keys:
        is_v4 = batch.is_v4(which)
        recs = batch.records
        return cls(is_v4, bool(is_v4.all()), recs[f"{which}_lo"] & _U32, recs[f"{which}_hi"])


def _by_specificity(items: list[tuple[int, int, int, object]]) -> list[tuple[int, int, int]]:
    # widest first, so that painting narrower ranges later overrides them
    items.sort(key=lambda t: t[1] - t[0], reverse=True)
    return [(s, e, v) for s, e, v, _ in items]


def _build(ranges: Sequence[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray] | None:
    if not ranges:
        return None
    points = sorted({s for s, _, _ in ranges} | {e + 1 for _, e, _ in ranges if e + 1 < 2**64})
    bounds = np.array(points, dtype=np.uint64)
    values = np.full(len(bounds), -1, np.int64)
    for start, end, value in ranges:  # widest first; narrower ones overwrite
        i = np.searchsorted(bounds, np.uint64(start), "left")
        j = np.searchsorted(bounds, np.uint64(end + 1), "left") if end + 1 < 2**64 else len(bounds)
        values[i:j] = value
    return bounds, values


def _find(table: tuple[np.ndarray, np.ndarray], keys: np.ndarray) -> np.ndarray:
    bounds, values = table
    idx = np.searchsorted(bounds, keys, "right") - 1
    found = values[np.maximum(idx, 0)]
    return np.where(idx >= 0, found, -1)


def _signature_keys(signatures: Iterable[object]) -> tuple[np.ndarray, np.ndarray]:
    ports: list[int] = []
    protos: list[int] = []
    for sig in signatures:
        proto = int(sig.protocol)  # type: ignore[attr-defined]
        sig_ports = list(sig.ports)  # type: ignore[attr-defined]
        if sig_ports:
            ports += [(proto << 16) | int(p) for p in sig_ports]
        else:
            protos.append(proto)
    return np.array(sorted(set(ports)), np.int64), np.array(sorted(set(protos)), np.int64)


@dataclass
class Classifier:
    """Built from inventory rows and a policy's detection rules; immutable once built."""

    allocations: IntervalTable  # address → institution id
    backbone: IntervalTable  # address → 1 inside the backbone
    ignored: IntervalTable  # address → 1 ignored
    remote_control: tuple[np.ndarray, np.ndarray]
    internet_vpn: tuple[np.ndarray, np.ndarray]
    # (exporter address, input ifIndex) → (link id, institution id); optional
    ingress: Mapping[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        allocations: Iterable[tuple[str, int]],
        backbone: Iterable[str],
        ignore: Iterable[str] = (),
        remote_control: Iterable[object] = (),
        internet_vpn: Iterable[object] = (),
        ingress: Mapping[tuple[str, int], tuple[int, int]] | None = None,
    ) -> Classifier:
        return cls(
            IntervalTable.from_prefixes(allocations),
            IntervalTable.from_prefixes((p, 1) for p in backbone),
            IntervalTable.from_prefixes((p, 1) for p in ignore),
            _signature_keys(remote_control),
            _signature_keys(internet_vpn),
            dict(ingress or {}),
        )

    def classify(self, batch: FlowBatch) -> np.ndarray:
        """Candidates (record row, kind, institution, link) as a CANDIDATE_DTYPE array."""
        recs = batch.records
        n = len(recs)
        if n == 0:
            return np.zeros(0, CANDIDATE_DTYPE)
        src, dst = _Keys.of(batch, "src"), _Keys.of(batch, "dst")
        src_inst = self.allocations.lookup(src)
        outbound = self.backbone.lookup(dst) < 0
        ignored = np.zeros(n, bool)
        if not self.ignored.empty():
            ignored = (self.ignored.lookup(src) >= 0) | (self.ignored.lookup(dst) >= 0)
            outbound &= ~ignored
        link = np.full(n, -1, np.int64)
        link_inst = np.full(n, -1, np.int64)
        if self.ingress:
            link, link_inst = self._ingress(batch)
        owner = np.where(src_inst >= 0, src_inst, link_inst)
        parts = []
        attributed = outbound & (owner >= 0)
        parts.append(self._emit(attributed, "outbound_internet", owner, link))
        key = (recs["protocol"].astype(np.int64) << 16) | recs["dst_port"].astype(np.int64)
        proto = recs["protocol"].astype(np.int64)
        for kind, (ports, protos) in (
            ("remote_control", self.remote_control),
            ("internet_vpn", self.internet_vpn),
        ):
            if len(ports) or len(protos):
                hit = np.isin(key, ports) | np.isin(proto, protos)
                parts.append(self._emit(attributed & hit, kind, owner, link))
        if self.ingress:
            wrong = (link_inst >= 0) & (src_inst != link_inst) & ~ignored
            parts.append(self._emit(wrong, "unauthorized_ip", link_inst, link))
        return np.concatenate(parts)

    def _ingress(self, batch: FlowBatch) -> tuple[np.ndarray, np.ndarray]:
        recs = batch.records
        keys: list[tuple[int, int, int, int]] = []
        for i, (addr, _domain) in enumerate(batch.exporters):
            for (e_addr, ifindex), (link_id, inst_id) in self.ingress.items():
                if e_addr == addr:
                    keys.append((i, ifindex, link_id, inst_id))
        link = np.full(len(recs), -1, np.int64)
        inst = np.full(len(recs), -1, np.int64)
        if not keys:
            return link, inst
        table = np.array(keys, dtype=np.int64)
        combo = (table[:, 0] << 32) | table[:, 1]
        order = np.argsort(combo)
        combo = combo[order]
        want = (recs["exporter"].astype(np.int64) << 32) | recs["input_if"].astype(np.int64)
        idx = np.searchsorted(combo, want)
        idx = np.minimum(idx, len(combo) - 1)
        hit = combo[idx] == want
        link = np.where(hit, table[order][idx, 2], -1)
        inst = np.where(hit, table[order][idx, 3], -1)
        return link, inst

    @staticmethod
    def _emit(mask: np.ndarray, kind: str, inst: np.ndarray, link: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(mask)
        out = np.empty(len(rows), CANDIDATE_DTYPE)
        out["row"] = rows
        out["kind"] = KIND_CODE[kind]
        out["institution"] = inst[rows]
        out["link"] = link[rows]
        return out
