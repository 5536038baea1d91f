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
    lo: np.ndarray  # uint64: lower half (IPv4-mapped: 0xffff << 32 | the IPv4 address)
    v6: np.ndarray  # uint64: the upper half of the IPv6 address

    @property
    def v4(self) -> np.ndarray:
        """uint32: the IPv4 address (meaningless where not is_v4)."""
        return self.lo.astype(np.uint32)

    @classmethod
    def of(cls, batch: FlowBatch, which: str) -> _Keys:
        is_v4 = batch.is_v4(which)
        all_v4 = batch.all_v4 or bool(is_v4.all())
        return cls(is_v4, all_v4, batch[f"{which}_lo"], batch[f"{which}_hi"])


# IPv4-mapped addresses are looked up by their lower half, which lies in this range of the
# 64-bit key space; IPv6 addresses by their upper half (the /64). One merged table over both
# answers a mixed batch with one search; the rare IPv6 /64 inside the range (::ffff:0:0/96's
# neighbours in 0::/16, reserved space) is looked up again in the IPv6 table alone.
_MAPPED_START = 0xFFFF << 32
_MAPPED_END = _MAPPED_START + (1 << 32)  # exclusive


class SideTable:
    """Several interval tables merged over one set of bounds per address family, so one
    ``searchsorted`` per family answers all of them (e.g. allocation and ignore list)."""

    def __init__(self, tables: Sequence[IntervalTable]) -> None:
        self.width = len(tables)
        self.v4 = self._merge([t.v4 for t in tables], 1 << 32, np.uint32)
        self.v6 = self._merge([t.v6 for t in tables], 1 << 64, np.uint64)
        self.mixed = self._unify(self.v4, self.v6, self.width)

    @staticmethod
    def _unify(
        v4: tuple[np.ndarray, np.ndarray] | None,
        v6: tuple[np.ndarray, np.ndarray] | None,
        width: int,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Both families over one 64-bit key space: IPv4 at _MAPPED_START + address,
        IPv6 (upper half) everywhere else."""
        if v4 is None and v6 is None:
            return None
        region = [np.uint64(_MAPPED_START), np.uint64(_MAPPED_END)]
        parts = [np.zeros(1, np.uint64), np.array(region, np.uint64)]
        if v4 is not None:
            parts.append(v4[0].astype(np.uint64) + np.uint64(_MAPPED_START))
        if v6 is not None:
            b6 = v6[0]
            parts.append(b6[(b6 < region[0]) | (b6 >= region[1])])
        bounds = np.unique(np.concatenate(parts))
        values = np.full((width, len(bounds)), -1, np.int64)
        inside = (bounds >= region[0]) & (bounds < region[1])
        if v4 is not None:
            b4, vals4 = v4
            keys4 = (bounds[inside] - region[0]).astype(np.uint32)
            values[:, inside] = vals4[:, _search(b4, keys4)]
        if v6 is not None:
            b6, vals6 = v6
            values[:, ~inside] = vals6[:, _search(b6, bounds[~inside])]
        return bounds, values

    @staticmethod
    def _merge(
        parts: Sequence[tuple[np.ndarray, np.ndarray] | None], limit: int, dtype: type
    ) -> tuple[np.ndarray, np.ndarray] | None:
        present = [p for p in parts if p is not None]
        if not present:
            return None
        merged = np.unique(np.concatenate([b for b, _ in present] + [np.zeros(1, np.uint64)]))
        if limit < 1 << 64:  # IPv4: bounds past 2**32 - 1 are never reached by a key
            merged = merged[merged < np.uint64(limit)]
        values = np.full((len(parts), len(merged)), -1, np.int64)
        for i, p in enumerate(parts):
            if p is not None:
                values[i] = _find(p, merged)
        # bound 0 is always present, so every key finds a row (no -1 index to mask)
        return merged.astype(dtype), values

    def lookup(self, keys: _Keys) -> np.ndarray:
        """(tables, records) int64: each table's value per record, -1 where none applies."""
        n = len(keys.v4)
        if keys.all_v4:
            if self.v4 is None:
                return np.full((self.width, n), -1, np.int64)
            bounds, values = self.v4
            return values[:, _search(bounds, keys.v4)]
        if self.mixed is None:
            return np.full((self.width, n), -1, np.int64)
        bounds, values = self.mixed
        key = np.where(keys.is_v4, keys.lo, keys.v6)
        out = values[:, _search(bounds, key)]
        hi = keys.v6
        odd = np.flatnonzero(
            ~keys.is_v4 & (hi >= np.uint64(_MAPPED_START)) & (hi < np.uint64(_MAPPED_END))
        )
        if len(odd):
            if self.v6 is None:
                out[:, odd] = -1
            else:
                b6, vals6 = self.v6
                out[:, odd] = vals6[:, _search(b6, hi[odd])]
        return out


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


def _search(bounds: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of the last bound <= key (bound 0 is always present, so never -1)."""
    return np.searchsorted(bounds, keys, "right") - 1


class SignatureTable:
    """(protocol, destination port) → bit set of signature kinds, as precomputed arrays: one
    256-entry row index per protocol and one 65536-entry row per protocol that has ports."""

    def __init__(self, kinds: Sequence[Iterable[object]]) -> None:
        by_proto: dict[int, np.ndarray] = {}
        any_port = np.zeros(256, np.uint8)
        for bit, signatures in enumerate(kinds):
            for sig in signatures:
                proto = int(sig.protocol) & 0xFF  # type: ignore[attr-defined]
                ports = [int(p) & 0xFFFF for p in sig.ports]  # type: ignore[attr-defined]
                if not ports:
                    any_port[proto] |= 1 << bit
                    continue
                row = by_proto.setdefault(proto, np.zeros(65536, np.uint8))
                row[ports] |= 1 << bit
        self.any_port = any_port
        self.row_of = np.zeros(256, np.intp)  # row 0: no port signatures
        self.rows = np.zeros((1 + len(by_proto), 65536), np.uint8)
        for i, (proto, row) in enumerate(sorted(by_proto.items()), start=1):
            self.row_of[proto] = i
            self.rows[i] = row
        self.empty = not by_proto and not any_port.any()

    def bits(self, protocol: np.ndarray, port: np.ndarray) -> np.ndarray:
        return self.any_port[protocol] | self.rows[self.row_of[protocol], port]


@dataclass
class Classifier:
    """Built from inventory rows and a policy's detection rules; immutable once built."""

    allocations: IntervalTable  # address → institution id
    backbone: IntervalTable  # address → 1 inside the backbone
    ignored: IntervalTable  # address → 1 ignored
    signatures: SignatureTable  # bit 0 remote_control, bit 1 internet_vpn
    # the ingress link of a flow: (device id, input ifIndex) → (link id, institution id), from
    # the Interface table, and the device of each exporter: (address, observation domain) →
    # device id for v9/IPFIX, address → device id for v5 (which has no domain)
    ingress: Mapping[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    exporter_devices: Mapping[tuple[str, int], int] = field(default_factory=dict)
    address_devices: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one searchsorted per family and side: src → (institution, ignored),
        # dst → (backbone, ignored)
        self._src = SideTable([self.allocations, self.ignored])
        self._dst = SideTable([self.backbone, self.ignored])
        # ingress as a sorted int64 table of device << 32 | ifIndex
        items = sorted(((d << 32) | (i & 0xFFFFFFFF), v) for (d, i), v in self.ingress.items())
        self._ingress_keys = np.array([k for k, _ in items], np.int64)
        self._ingress_vals = np.array([v for _, v in items], np.int64).reshape(-1, 2)

    @classmethod
    def build(
        cls,
        *,
        allocations: Iterable[tuple[str, int]],
        backbone: Iterable[str],
        ignore: Iterable[str] = (),
        remote_control: Iterable[object] = (),
        internet_vpn: Iterable[object] = (),
        ingress: Mapping[tuple[int, int], tuple[int, int]] | None = None,
        exporter_devices: Mapping[tuple[str, int], int] | None = None,
        address_devices: Mapping[str, int] | None = None,
    ) -> Classifier:
        return cls(
            IntervalTable.from_prefixes(allocations),
            IntervalTable.from_prefixes((p, 1) for p in backbone),
            IntervalTable.from_prefixes((p, 1) for p in ignore),
            SignatureTable([list(remote_control), list(internet_vpn)]),
            dict(ingress or {}),
            dict(exporter_devices or {}),
            dict(address_devices or {}),
        )

    def classify(self, batch: FlowBatch) -> np.ndarray:
        """Candidates (record row, kind, institution, link) as a CANDIDATE_DTYPE array."""
        n = len(batch)
        if n == 0:
            return np.zeros(0, CANDIDATE_DTYPE)
        src_inst, src_ignored = self._src.lookup(_Keys.of(batch, "src"))
        dst_backbone, dst_ignored = self._dst.lookup(_Keys.of(batch, "dst"))
        ignored = (src_ignored >= 0) | (dst_ignored >= 0)
        outbound = (dst_backbone < 0) & ~ignored
        link: np.ndarray | None = None
        link_inst: np.ndarray | None = None
        owner = src_inst
        if self.ingress:
            link, link_inst = self._ingress(batch)
            owner = np.where(src_inst >= 0, src_inst, link_inst)
        rows = np.flatnonzero(outbound & (owner >= 0))
        parts = [self._emit(rows, "outbound_internet", owner, link)]
        if len(rows) and not self.signatures.empty:
            bits = self.signatures.bits(batch["protocol"][rows], batch["dst_port"][rows])
            parts.append(self._emit(rows[(bits & 1) != 0], "remote_control", owner, link))
            parts.append(self._emit(rows[(bits & 2) != 0], "internet_vpn", owner, link))
        if link_inst is not None:
            wrong = (link_inst >= 0) & (src_inst != link_inst) & ~ignored
            parts.append(self._emit(np.flatnonzero(wrong), "unauthorized_ip", link_inst, link))
        return np.concatenate(parts)

    def _ingress(self, batch: FlowBatch) -> tuple[np.ndarray, np.ndarray]:
        """(link, institution) of each record's ingress interface, -1 where unknown: the
        exporter's device (per batch exporter, a handful) and the record's input ifIndex
        looked up in the sorted (device, ifIndex) table."""
        n = len(batch)
        link = np.full(n, -1, np.int64)
        inst = np.full(n, -1, np.int64)
        if not len(self._ingress_keys) or not batch.exporters:
            return link, inst
        exact = np.array([self.exporter_devices.get(e, -1) for e in batch.exporters], np.int64)
        by_addr = np.array([self.address_devices.get(e[0], -1) for e in batch.exporters], np.int64)
        exp = batch["exporter"]
        device = np.where(batch["version"] == 5, by_addr[exp], exact[exp])
        want = (device << 32) | batch["input_if"].astype(np.int64)
        idx = np.minimum(np.searchsorted(self._ingress_keys, want), len(self._ingress_keys) - 1)
        hit = (self._ingress_keys[idx] == want) & (device >= 0)
        link = np.where(hit, self._ingress_vals[idx, 0], -1)
        inst = np.where(hit, self._ingress_vals[idx, 1], -1)
        return link, inst

    @staticmethod
    def _emit(rows: np.ndarray, kind: str, inst: np.ndarray, link: np.ndarray | None) -> np.ndarray:
        out = np.empty(len(rows), CANDIDATE_DTYPE)
        out["row"] = rows
        out["kind"] = KIND_CODE[kind]
        out["institution"] = inst[rows]
        out["link"] = -1 if link is None else link[rows]
        return out
