"""Batch decoder for NetFlow v5, NetFlow v9 and IPFIX (RFC 7011).

Why hand-written: speed, and correctness across exporters. Per-record Python objects (the
PyPI ``netflow`` package, scapy's dissector) top out at tens or hundreds of thousands of
records per second, and ``netflow`` keys templates by template ID only, so two exporters using
the same ID overwrite each other. Here set headers of a whole batch are read with array
operations (:mod:`collector.netflow.walk`); every record of one compiled template is fetched
with one gather, and the conversion to :data:`FLOW_DTYPE` is column arithmetic. Sets that
change decoder state (new templates, withdrawals, new options values, data before its
template) send their datagram through a per-datagram Python walk, in arrival order.

Nothing raises out of :meth:`Decoder.decode`: malformed input is counted by kind in
:class:`DecodeStats` and dropped; valid sets before a bad one in the same datagram are kept.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collector.netflow.batch import COLUMNS, V4_MAPPED_PREFIX, FlowBatch
from collector.netflow.templates import (
    IE_DST_PORT,
    IE_DST_V4,
    IE_DST_V6,
    IE_END_DELTA_US,
    IE_END_MS,
    IE_END_NS,
    IE_END_S,
    IE_END_US,
    IE_FIRST_UPTIME,
    IE_ICMP_V4,
    IE_ICMP_V6,
    IE_INPUT_IF,
    IE_LAST_UPTIME,
    IE_OCTETS,
    IE_OCTETS_TOTAL,
    IE_OUTPUT_IF,
    IE_PACKETS,
    IE_PACKETS_TOTAL,
    IE_PROTOCOL,
    IE_SAMPLER_RANDOM_INTERVAL,
    IE_SAMPLING_INTERVAL,
    IE_SAMPLING_PACKET_INTERVAL,
    IE_SAMPLING_PACKET_SPACE,
    IE_SAMPLING_POPULATION,
    IE_SAMPLING_SIZE,
    IE_SRC_PORT,
    IE_SRC_V4,
    IE_SRC_V6,
    IE_START_DELTA_US,
    IE_START_MS,
    IE_START_NS,
    IE_START_S,
    IE_START_US,
    IE_SYS_INIT_MS,
    IE_TCP_FLAGS,
    IE_TOS,
    V5_TEMPLATE,
    Compiled,
    DomainKey,
    FieldSpec,
    TemplateCache,
    TemplateError,
    TemplateKey,
    compile_template,
)
from collector.netflow.walk import Joined, Walk, gather, walk_joined

log = logging.getLogger(__name__)

_V5_HDR = struct.Struct("!HHIIIIBBH")
_V9_HDR = struct.Struct("!HHIIII")
_IPFIX_HDR = struct.Struct("!HHIII")
_SET_HDR = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

_CTX_DTYPE = np.dtype(
    [
        ("exporter", "u4"),
        ("version", "u2"),
        ("export_ms", "i8"),
        ("uptime", "i8"),  # header sysUptime (v5/v9); -1 for IPFIX
        ("sys_init", "i8"),  # IPFIX systemInitTimeMilliseconds; -1 unknown
        ("sampling", "u4"),
    ]
)
_V5_ID = id(V5_TEMPLATE)
_V5_HDR_DTYPE = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),
        ("uptime", ">u4"),
        ("secs", ">u4"),
        ("nsecs", ">u4"),
        ("seq", ">u4"),
        ("etype", "u1"),
        ("eid", "u1"),
        ("sampling", ">u2"),
    ]
)
_NTP_EPOCH = 2208988800
_MAX_SEQ_KEYS = 65536
_MEMO_MAX_SETS = 4096  # remembered template sets (bounded: at most 4096 x 1 KiB)
_MEMO_MAX_BODY = 1024
_MAX_REJUDGE = 16  # template/options changes per batch before the rest goes per datagram
# kinds of sets on the array path
_FAST, _RESERVED, _TEMPLATE, _OPTIONS, _SLOW = range(5)


@dataclass
class DecodeStats:
    """Counters the metrics module exports; plain ints so the hot path stays cheap."""

    datagrams: Counter[int] = field(default_factory=Counter)  # by version
    records: Counter[int] = field(default_factory=Counter)  # by version
    errors: Counter[str] = field(default_factory=Counter)  # by kind
    template_misses: int = 0  # data sets whose template was not known (yet)
    pending_decoded: int = 0  # of those, sets decoded later when the template came
    pending_dropped: int = 0  # sets dropped from the full pending buffer
    sequence_gaps: Counter[tuple[str, int]] = field(default_factory=Counter)
    sequence_lost: Counter[tuple[str, int]] = field(default_factory=Counter)

    def error_total(self) -> int:
        return sum(self.errors.values())


class _Pending:
    """Bounded FIFO of data sets waiting for their template."""

    def __init__(self, max_sets: int, max_bytes: int) -> None:
        self.max_sets = max_sets
        self.max_bytes = max_bytes
        self.entries: OrderedDict[int, tuple[TemplateKey, bytes, int, int]] = OrderedDict()
        self.by_key: dict[TemplateKey, list[int]] = {}
        self.bytes = 0
        self._next = 0

    def add(self, key: TemplateKey, body: bytes, export_ms: int, uptime: int) -> int:
        """Store a set; returns how many old sets had to be dropped to make room."""
        dropped = 0
        if len(body) > self.max_bytes:
            return 1
        while self.entries and (
            len(self.entries) >= self.max_sets or self.bytes + len(body) > self.max_bytes
        ):
            _, (k, b, _, _) = self.entries.popitem(last=False)
            self.bytes -= len(b)
            ids = self.by_key.get(k)
            if ids:
                ids.pop(0)
                if not ids:
                    del self.by_key[k]
            dropped += 1
        n = self._next
        self._next += 1
        self.entries[n] = (key, body, export_ms, uptime)
        self.by_key.setdefault(key, []).append(n)
        self.bytes += len(body)
        return dropped

    def take(self, key: TemplateKey) -> list[tuple[bytes, int, int]]:
        ids = self.by_key.pop(key, None)
        if not ids:
            return []
        out = []
        for n in ids:
            _, body, export_ms, uptime = self.entries.pop(n)
            self.bytes -= len(body)
            out.append((body, export_ms, uptime))
        return out


class Decoder:
    """Decodes batches of (datagram, exporter address) into one :class:`FlowBatch`."""

    def __init__(
        self,
        cache: TemplateCache | None = None,
        *,
        default_sampling: Mapping[str, int] | None = None,
        pending_max_sets: int = 1024,
        pending_max_bytes: int = 4 << 20,
        batch_sets: bool = True,
    ) -> None:
        self.cache = cache if cache is not None else TemplateCache()
        # False: walk v9/IPFIX sets in Python, one datagram at a time (the reference path the
        # tests compare the array walk with)
        self.batch_sets = batch_sets
        self.default_sampling: Mapping[str, int] = default_sampling or {}
        self.stats = DecodeStats()
        self._pending = _Pending(pending_max_sets, pending_max_bytes)
        self._next_seq: dict[tuple[str, int, int], int] = {}
        self._ipfix_seq: dict[tuple[str, int, int], tuple[int, int, int, bool]] = {}
        # per decode call: id(compiled) -> (compiled, bodies, record counts, context ids)
        self._groups: dict[int, tuple[Compiled, list[Any], list[int], list[int]]] = {}
        self._ctx: list[tuple[int, int, int, int, int, int]] = []  # one row per header context
        self._options_records = 0
        self._exporters: dict[tuple[str, int], int] = {}
        self._parts: list[dict[str, np.ndarray]] = []  # decoded column groups of this call
        # (domain, set id, template set body) -> the templates it taught
        self._template_memo: dict[
            tuple[DomainKey, int, bytes], list[tuple[TemplateKey, Compiled]]
        ] = {}
        self._all_v4 = True
        # per decode call: (exporter index, sys init, sampling) per domain
        self._domain_ctx: dict[DomainKey, tuple[int, int, int]] = {}
        # per decode call, array path: the joined datagrams, the templates its sets use,
        # (set body offsets, record counts, template index, context row) per committed run,
        # and the context rows (6, datagrams) of those runs
        self._fast_buf = b""
        self._fast_templates: list[Compiled] = []
        self._fast_tindex: dict[int, int] = {}
        self._fast_sets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._fast_ctx: list[np.ndarray] = []
        self._fast_rows = 0
        self._next = 0  # first datagram of the array path not yet handled
        # (domain, set id, options data body) -> (template, sampling rate, system init | None)
        self._options_memo: dict[
            tuple[DomainKey, int, bytes], tuple[Compiled, int, int | None]
        ] = {}

    # -- public ------------------------------------------------------------------------------
    def decode(self, datagrams: Iterable[tuple[bytes, str]]) -> FlowBatch:
        """Decode datagrams (payload, exporter address); never raises on bad input."""
        self._groups = {}
        self._ctx = []
        self._exporters = {}
        self._parts = []
        self._all_v4 = True
        self._domain_ctx = {}
        self._reset_fast()
        errors = self.stats.errors
        items = datagrams if isinstance(datagrams, list) else list(datagrams)
        joined = Joined.of([d for d, _ in items]) if items else None
        rest = np.arange(len(items))
        if joined is not None:
            try:
                rest = self._v5_batch(items, joined)
            except Exception:  # a bug in the fast path: fall back to one datagram at a time
                errors["internal"] += 1
                log.exception("netflow v5 batch decoder failed; decoding per datagram")
                self._parts = []
                self._exporters = {}
        others = [items[i] for i in rest.tolist()]
        if self.batch_sets and others and joined is not None:
            self._next = 0
            try:
                self._templated_batch(others, joined, rest)
                others = []
            except Exception:  # a bug in the array walk: the rest one datagram at a time
                errors["internal"] += 1
                log.exception("netflow v9/IPFIX batch decoder failed; decoding per datagram")
                others = others[self._next :]
        for data, addr in others:
            self._one(data, addr)
        try:
            return self._build()
        except Exception:
            errors["internal"] += 1
            log.exception("netflow batch conversion failed")
            return FlowBatch.empty()
        finally:
            self._groups = {}
            self._ctx = []
            self._parts = []
            self._reset_fast()

    def _reset_fast(self) -> None:
        self._fast_buf = b""
        self._fast_templates = []
        self._fast_tindex = {}
        self._fast_sets = []
        self._fast_ctx = []
        self._fast_rows = 0

    def _one(self, data: bytes, addr: str) -> None:
        """One datagram through the per-datagram path (never raises)."""
        errors = self.stats.errors
        try:
            if len(data) < 4:
                errors["short_header"] += 1
                return
            version = (data[0] << 8) | data[1]
            if version == 9:
                self._v9(data, addr)
            elif version == 10:
                self._ipfix(data, addr)
            elif version == 5:
                self._v5(data, addr)
            else:
                errors["bad_version"] += 1
        except Exception:  # a decoder bug must not stop the pipeline
            errors["internal"] += 1
            log.exception("netflow decoder failed on a datagram from %s", addr)

    def pending_sets(self) -> int:
        return len(self._pending.entries)

    # -- NetFlow v9 / IPFIX, whole batch with the array walk ---------------------------------
    def _templated_batch(
        self, items: list[tuple[bytes, str]], joined: Joined, where: np.ndarray
    ) -> None:
        """Decode the batch's v9/IPFIX datagrams (and route the rest) in arrival order.

        Set headers come from :func:`walk`; a data set whose template is known, fixed-length
        and not options is "fast": it is only recorded (offset, count, template, context) and
        decoded at the end with one gather per template. Template sets identical to ones
        already learned and options data that announce nothing new are no-ops. Any other set
        (a new template, a withdrawal, new options values, data before its template,
        variable-length records) and any malformed datagram sends its whole datagram through
        the per-datagram path at its place in the order; if that changed templates or
        options, the sets after it are judged again against the new state."""
        n = len(items)
        w = walk_joined(joined.buf, joined.offs[where], joined.lens[where], joined.version[where])
        self._fast_buf = w.buf
        didx, dlist = _domains(items, w)
        nsets = len(w.set_id)
        set_version = w.version[w.set_dgram]
        is_data = w.set_id >= 256
        is_template = np.where(set_version == 9, w.set_id <= 1, (w.set_id == 2) | (w.set_id == 3))
        code = np.where(is_data, _SLOW, np.where(is_template, _TEMPLATE, _RESERVED)).astype(np.int8)
        tmpl = np.full(nsets, -1, np.int64)
        reclen = np.ones(nsets, np.int64)
        data_key = (didx[w.set_dgram] << 16) | w.set_id
        opt_records = np.zeros(n, np.int64)
        rejudged = 0
        seg = 0  # first datagram not yet committed or handled
        self._judge(w, dlist, data_key, is_data, code, tmpl, reclen, 0)
        events = self._events(w, didx, code, tmpl, reclen, 0)
        seen: dict[tuple[int, int, int, bytes], int] = {}  # no-op verdicts until a change
        i = 0
        while i < len(events):
            ev = events[i]
            d = ev[0]
            if ev[1] >= 0:
                records = self._noop(w, dlist, ev, seen)
                if records >= 0:
                    opt_records[d] += records
                    i += 1
                    continue
            # datagram d goes through the per-datagram path, after everything before it
            s_lo, s_hi = np.searchsorted(w.set_dgram, [seg, d])
            self._commit(
                w, didx, dlist, seg, d, int(s_lo), int(s_hi), code, tmpl, reclen, opt_records
            )
            self._next = d
            before = self.cache.changes
            self._one(*items[d])
            self._next = seg = d + 1
            if self.cache.changes != before:
                rejudged += 1
                if rejudged > _MAX_REJUDGE:  # state churning: the rest one at a time
                    for j in range(seg, n):
                        self._one(*items[j])
                        self._next = j + 1
                    return
                lo = int(np.searchsorted(w.set_dgram, seg))
                self._judge(w, dlist, data_key, is_data, code, tmpl, reclen, lo)
                events = self._events(w, didx, code, tmpl, reclen, seg)
                seen = {}
                i = 0
            else:
                while i < len(events) and events[i][0] <= d:
                    i += 1
        s_lo = int(np.searchsorted(w.set_dgram, seg))
        self._commit(w, didx, dlist, seg, n, s_lo, nsets, code, tmpl, reclen, opt_records)
        self._next = n

    def _judge(
        self,
        w: Walk,
        dlist: list[DomainKey],
        data_key: np.ndarray,
        is_data: np.ndarray,
        code: np.ndarray,
        tmpl: np.ndarray,
        reclen: np.ndarray,
        lo: int,
    ) -> None:
        """Kind of every data set from set ``lo`` on, against the templates cached now: one
        dictionary lookup per distinct (domain, template id), not per set."""
        rows = np.flatnonzero(is_data[lo:]) + lo
        if not len(rows):
            return
        uniq, inv = np.unique(data_key[rows], return_inverse=True)
        u_code = np.full(len(uniq), _SLOW, np.int8)
        u_tmpl = np.full(len(uniq), -1, np.int64)
        u_len = np.ones(len(uniq), np.int64)
        by_domain = self.cache.by_domain
        for j, k in enumerate(uniq.tolist()):
            compiled = (by_domain.get(dlist[k >> 16]) or {}).get(k & 0xFFFF)
            if compiled is None or compiled.variable:
                continue  # data before its template, or variable-length records
            u_code[j] = _FAST if compiled.plain else _OPTIONS
            u_len[j] = compiled.reclen
            t = self._fast_tindex.get(id(compiled))
            if t is None:
                t = self._fast_tindex[id(compiled)] = len(self._fast_templates)
                self._fast_templates.append(compiled)
            u_tmpl[j] = t
        inv = inv.reshape(-1)
        code[rows] = u_code[inv]
        tmpl[rows] = u_tmpl[inv]
        reclen[rows] = u_len[inv]

    @staticmethod
    def _events(
        w: Walk,
        didx: np.ndarray,
        code: np.ndarray,
        tmpl: np.ndarray,
        reclen: np.ndarray,
        first: int,
    ) -> _Events:
        """Every set that is not a fast data set, and every datagram the walk left to the
        per-datagram path (set -1), from datagram ``first`` on, in order, as plain ints:
        (datagram, set, kind, body offset, body length, set id, domain, template, record
        length)."""
        lo = int(np.searchsorted(w.set_dgram, first))
        sets = np.flatnonzero(code[lo:] >= _TEMPLATE) + lo
        slow = np.flatnonzero(w.slow[first:]) + first
        d = np.concatenate([w.set_dgram[sets], slow])
        order = np.argsort(d, kind="stable")
        s = np.concatenate([sets, np.full(len(slow), -1, np.int64)])[order]
        d = d[order]
        if not len(code):  # no sets at all: only datagrams left to the per-datagram path
            zero = np.zeros(len(d), np.int64)
            cols = [d, s, zero + _SLOW, zero, zero, zero, didx[d], zero, zero + 1]
        else:
            sv = np.maximum(s, 0)
            cols = [
                d,
                s,
                np.where(s >= 0, code[sv], _SLOW),
                w.set_start[sv],
                w.set_len[sv],
                w.set_id[sv],
                didx[d],
                tmpl[sv],
                reclen[sv],
            ]
        return _Events(cols)

    def _noop(
        self,
        w: Walk,
        dlist: list[DomainKey],
        ev: tuple[int, ...],
        seen: dict[tuple[int, int, int, bytes], int],
    ) -> int:
        """Options data records in set ``ev`` if it would change nothing (so its datagram can
        stay on the array path): a template set already learned (0), or options data that
        announce what is known; -1 if it would change something."""
        _, _, kind, start, size, sid, dindex, t, reclen = ev
        if kind == _OPTIONS:
            size -= size % reclen
        body = w.buf[start : start + size]
        skey = (kind, dindex, sid, body)
        got = seen.get(skey)
        if got is None:
            got = seen[skey] = self._judge_noop(dlist[dindex], kind, sid, body, t, reclen)
        return got

    def _judge_noop(
        self, dkey: DomainKey, kind: int, sid: int, body: bytes, t: int, reclen: int
    ) -> int:
        if kind == _TEMPLATE:
            memo = self._template_memo.get((dkey, sid, body))
            if memo is None:
                return -1
            cached = self.cache.templates
            return 0 if all(cached.get(k) is c for k, c in memo) else -1
        if kind != _OPTIONS:
            return -1
        count = len(body) // reclen
        if not count:
            return 0
        compiled = self._fast_templates[t]
        state = self.cache.domains.get(dkey)
        if state is None:
            return -1
        mkey = (dkey, sid, body)
        known = self._options_memo.get(mkey)
        if known is not None and known[0] is compiled:
            rate, init = known[1], known[2]
        else:
            values = _options_values(compiled, body)
            if values is None:
                return -1
            rate, init = values
            if len(body) <= _MEMO_MAX_BODY:
                if len(self._options_memo) >= _MEMO_MAX_SETS:
                    self._options_memo.pop(next(iter(self._options_memo)))
                self._options_memo[mkey] = (compiled, rate, init)
        if (rate and rate != state.sampling) or (init is not None and init != state.sys_init_ms):
            return -1
        return count

    def _commit(
        self,
        w: Walk,
        didx: np.ndarray,
        dlist: list[DomainKey],
        lo: int,
        hi: int,
        s_lo: int,
        s_hi: int,
        code: np.ndarray,
        tmpl: np.ndarray,
        reclen: np.ndarray,
        opt_records: np.ndarray,
    ) -> None:
        """Account for datagrams [lo, hi) on the array path (none slow, every set of theirs
        fast, reserved or a no-op) and record their fast data sets."""
        if hi <= lo:
            return
        version = w.version[lo:hi]
        c = code[s_lo:s_hi]
        fast = np.flatnonzero(c == _FAST) + s_lo
        counts = w.set_len[fast] // reclen[fast]
        keep = counts > 0
        fast, counts = fast[keep], counts[keep]
        rel = w.set_dgram[fast] - lo  # datagram of each fast set, relative to lo
        per_dgram = np.bincount(rel, weights=counts, minlength=hi - lo).astype(np.int64)
        # context rows: one per datagram; exporter / sampling / init only where records are
        ctx = np.zeros((6, hi - lo), np.int64)
        ctx[_C_VERSION] = version
        ctx[_C_EXPORT_MS] = w.export_ms[lo:hi]
        ctx[_C_UPTIME] = w.uptime[lo:hi]
        dd = didx[lo:hi]
        with_records = np.unique(dd[per_dgram > 0])
        for k in with_records.tolist():
            exp, sys_init, sampling = self._domain_values(dlist[k])
            mine = dd == k
            ctx[_C_EXPORTER, mine] = exp
            ctx[_C_SYS_INIT, mine] = sys_init
            ctx[_C_SAMPLING, mine] = sampling
        # sequence numbers, in arrival order per domain
        v9 = np.flatnonzero(version == 9)
        v10 = np.flatnonzero(version == 10)
        if len(v9):
            seq = w.seq[lo:hi][v9]
            self._counter_sequences(seq, (seq + 1) & 0xFFFFFFFF, dd[v9], dlist)
        if len(v10):
            flows = per_dgram[v10]
            self._ipfix_sequences(
                w.seq[lo:hi][v10], flows + opt_records[lo:hi][v10], flows, dd[v10], dlist
            )
        stats = self.stats
        reserved = int((c == _RESERVED).sum())
        if reserved:
            stats.errors["reserved_set_id"] += reserved
        if len(v9):
            stats.datagrams[9] += len(v9)
            stats.records[9] += int(per_dgram[v9].sum())
        if len(v10):
            stats.datagrams[10] += len(v10)
            stats.records[10] += int(per_dgram[v10].sum())
        self._fast_sets.append((w.set_start[fast], counts, tmpl[fast], rel + self._fast_rows))
        self._fast_ctx.append(ctx)
        self._fast_rows += hi - lo

    def _ipfix_sequences(
        self,
        seq: np.ndarray,
        n_all: np.ndarray,
        n_flows: np.ndarray,
        inv: np.ndarray,
        keys: list[DomainKey],
    ) -> None:
        """IPFIX sequence check of complete messages, vectorized (same rule as :meth:`_ipfix`:
        the step from the previous message is its record count, or this one's, options
        data records counted or not)."""
        order = np.argsort(inv, kind="stable")
        g, sq, na, nf = inv[order], seq[order], n_all[order], n_flows[order]
        same = g[1:] == g[:-1]
        step = (sq[1:] - sq[:-1]) & 0xFFFFFFFF
        ok = (step == na[:-1]) | (step == nf[:-1]) | (step == na[1:]) | (step == nf[1:])
        for j in np.flatnonzero(same & ~ok).tolist():
            self._gap(keys[int(g[j + 1])], int(sq[j + 1]), int((sq[j] + na[j]) & 0xFFFFFFFF))
        firsts = np.flatnonzero(np.r_[True, ~same]).tolist()
        lasts = np.flatnonzero(np.r_[~same, True]).tolist()
        for f, last in zip(firsts, lasts, strict=True):
            key = keys[int(g[f])]
            prev = self._ipfix_seq.get(key)
            if prev is not None and prev[3]:
                s0, a0, f0 = int(sq[f]), int(na[f]), int(nf[f])
                st = (s0 - prev[0]) & 0xFFFFFFFF
                if st not in (prev[1], prev[2], a0, f0):
                    self._gap(key, s0, (prev[0] + prev[1]) & 0xFFFFFFFF)
            if key not in self._ipfix_seq and len(self._ipfix_seq) >= _MAX_SEQ_KEYS:
                self._ipfix_seq.pop(next(iter(self._ipfix_seq)))
            self._ipfix_seq[key] = (int(sq[last]), int(na[last]), int(nf[last]), True)

    # -- NetFlow v5, whole batch at once --------------------------------------------------
    def _v5_batch(self, items: list[tuple[bytes, str]], joined: Joined) -> np.ndarray:
        """Decode every v5 datagram of the batch with array operations; returns the others.

        v5 is fixed-format, so the batch is joined into one buffer, all 24-byte headers are
        read through one stride-1 structured view indexed by the datagram offsets, and all
        48-byte records through another indexed by the record offsets: no Python per datagram
        except collecting the exporter addresses."""
        buf, offs, lens = joined.buf, joined.offs, joined.lens
        is5 = joined.version == 5
        if not is5.any():
            return np.arange(len(items))
        rest = np.flatnonzero(~is5)
        errors = self.stats.errors
        short = is5 & (lens < 24)
        if short.any():
            errors["short_header"] += int(short.sum())
        cand = np.flatnonzero(is5 & (lens >= 24))
        hdr = _gather(buf, offs[cand], _V5_HDR_DTYPE)
        count = hdr["count"].astype(np.int64)
        bad = (count == 0) | (count > 30)
        trunc = ~bad & (24 + 48 * count > lens[cand])
        if bad.any() or trunc.any():
            errors["v5_count"] += int(bad.sum())
            errors["truncated"] += int(trunc.sum())
            good = ~bad & ~trunc
            cand, hdr, count = cand[good], hdr[good], count[good]
        m = len(cand)
        if not m:
            return rest
        self.stats.datagrams[5] += m
        # exporters: (address, engine type << 8 | engine id)
        amap: dict[str, int] = {}
        aidx = np.fromiter(
            (amap.setdefault(items[i][1], len(amap)) for i in cand.tolist()), np.int64, m
        )
        alist = list(amap)
        domain = (hdr["etype"].astype(np.int64) << 8) | hdr["eid"]
        key = (aidx << 16) | domain
        ukeys, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
        ukey_t = [(alist[k >> 16], k & 0xFFFF) for k in ukeys.tolist()]
        exp_of = np.array(
            [self._exporters.setdefault(k, len(self._exporters)) for k in ukey_t], np.uint32
        )
        seq = hdr["seq"].astype(np.int64)
        self._counter_sequences(
            seq, (seq + count) & 0xFFFFFFFF, inv, [(a, 5, d) for a, d in ukey_t]
        )
        # header context per datagram
        interval = (hdr["sampling"] & 0x3FFF).astype(np.uint64)
        if self.default_sampling:
            dflt = np.array([self.default_sampling.get(a, 0) for a in alist], np.uint64)
            interval = np.where(interval == 0, dflt[aidx], interval)
        interval = np.where(interval == 0, np.uint64(1), interval)
        export_ms = hdr["secs"].astype(np.int64) * 1000 + hdr["nsecs"] // 1_000_000
        uptime = hdr["uptime"].astype(np.int64)
        # records: one gather through a stride-1 view of the joined buffer
        total = int(count.sum())
        self.stats.records[5] += total
        rep = np.repeat(np.arange(m), count)
        first_rec = np.cumsum(count) - count
        starts = offs[cand][rep] + 24 + 48 * (np.arange(total) - first_rec[rep])
        rec = _gather(buf, starts, V5_TEMPLATE.dtype)
        samp = interval[rep]
        up = uptime[rep]
        exp_ms = export_ms[rep]
        zeros = np.zeros(total, np.uint64)
        self._parts.append(
            {
                "exporter": exp_of[inv][rep],
                "version": np.full(total, 5, np.uint16),
                "protocol": rec["e4"].copy(),
                "tcp_flags": rec["e6"].copy(),
                "src_hi": zeros,
                "src_lo": rec["e8"].astype(np.uint64) | V4_MAPPED_PREFIX,
                "dst_hi": zeros,
                "dst_lo": rec["e12"].astype(np.uint64) | V4_MAPPED_PREFIX,
                "src_port": rec["e7"].astype(np.uint16),
                "dst_port": rec["e11"].astype(np.uint16),
                "tos": rec["e5"].copy(),
                "input_if": rec["e10"].astype(np.uint32),
                "output_if": rec["e14"].astype(np.uint32),
                "sampling": samp.astype(np.uint32),
                "packets": rec["e2"].astype(np.uint64) * samp,
                "octets": rec["e1"].astype(np.uint64) * samp,
                "first_ms": _uptime_ms(exp_ms, up, rec["e22"].astype(np.int64)),
                "last_ms": _uptime_ms(exp_ms, up, rec["e21"].astype(np.int64)),
            }
        )
        return rest

    def _counter_sequences(
        self, seq: np.ndarray, nxt: np.ndarray, inv: np.ndarray, keys: list[DomainKey]
    ) -> None:
        """Sequence-gap check of datagrams whose next sequence number is known from their own
        header (v5: + records, v9: + 1), per (exporter, version, domain) ``keys[inv]``, in
        arrival order."""
        order = np.argsort(inv, kind="stable")
        s_inv, s_seq, s_nxt = inv[order], seq[order], nxt[order]
        same = s_inv[1:] == s_inv[:-1]
        for j in np.flatnonzero(same & (s_seq[1:] != s_nxt[:-1])).tolist():
            self._gap(keys[int(s_inv[j + 1])], int(s_seq[j + 1]), int(s_nxt[j]))
        firsts = np.flatnonzero(np.r_[True, ~same]).tolist()
        lasts = np.flatnonzero(np.r_[~same, True]).tolist()
        for f, last in zip(firsts, lasts, strict=True):
            key = keys[int(s_inv[f])]
            expected = self._next_seq.get(key)
            if expected is not None and int(s_seq[f]) != expected:
                self._gap(key, int(s_seq[f]), expected)
            self._remember_seq(key, int(s_nxt[last]))

    # -- headers -----------------------------------------------------------------------------
    def _v5(self, data: bytes, addr: str) -> None:
        if len(data) < 24:
            self.stats.errors["short_header"] += 1
            return
        _, count, uptime, secs, nsecs, seq, etype, eid, sampling = _V5_HDR.unpack_from(data)
        if count == 0 or count > 30:
            self.stats.errors["v5_count"] += 1
            return
        end = 24 + 48 * count
        if end > len(data):
            self.stats.errors["truncated"] += 1
            return
        domain = (etype << 8) | eid
        self.stats.datagrams[5] += 1
        self._sequence((addr, 5, domain), seq, count)
        interval = sampling & 0x3FFF
        if not interval:
            interval = self.default_sampling.get(addr, 0)
        export_ms = secs * 1000 + nsecs // 1_000_000
        exp = self._exporters.setdefault((addr, domain), len(self._exporters))
        group = self._groups.get(_V5_ID)
        if group is None:
            group = self._groups[_V5_ID] = (V5_TEMPLATE, [], [], [])
        group[1].append(memoryview(data)[24:end])
        group[2].append(count)
        group[3].append(len(self._ctx))
        self._ctx.append((exp, 5, export_ms, uptime, -1, interval))
        self.stats.records[5] += count

    def _v9(self, data: bytes, addr: str) -> None:
        if len(data) < 20:
            self.stats.errors["short_header"] += 1
            return
        _, _count, uptime, secs, seq, source_id = _V9_HDR.unpack_from(data)
        self.stats.datagrams[9] += 1
        self._sequence((addr, 9, source_id), seq, 1)
        self._sets(data, 20, len(data), addr, 9, source_id, secs * 1000, uptime)

    def _ipfix(self, data: bytes, addr: str) -> None:
        if len(data) < 16:
            self.stats.errors["short_header"] += 1
            return
        _, length, secs, seq, domain = _IPFIX_HDR.unpack_from(data)
        if length < 16:
            self.stats.errors["bad_length"] += 1
            return
        if length > len(data):
            self.stats.errors["truncated"] += 1
            return
        self.stats.datagrams[10] += 1
        key = (addr, 10, domain)
        flows_before = self.stats.records[10]
        self._options_records = 0
        _, complete = self._sets(data, 16, length, addr, 10, domain, secs * 1000, -1)
        n_flows = self.stats.records[10] - flows_before
        n_all = n_flows + self._options_records
        # RFC 7011: sequence = data records (options data included) sent before this message.
        # softflowd counts flow records only and includes the current message; accept both
        # rather than report loss that did not happen.
        prev = self._ipfix_seq.get(key)
        if prev is not None and prev[3]:
            step = (seq - prev[0]) & 0xFFFFFFFF
            if step not in (prev[1], prev[2]) and not (complete and step in (n_all, n_flows)):
                self._gap(key, seq, (prev[0] + prev[1]) & 0xFFFFFFFF)
        if key not in self._ipfix_seq and len(self._ipfix_seq) >= _MAX_SEQ_KEYS:
            self._ipfix_seq.pop(next(iter(self._ipfix_seq)))
        self._ipfix_seq[key] = (seq, n_all, n_flows, complete)

    def _sequence(self, key: tuple[str, int, int], seq: int, increment: int) -> None:
        expected = self._next_seq.get(key)
        if expected is not None and seq != expected:
            self._gap(key, seq, expected)
        self._remember_seq(key, (seq + increment) & 0xFFFFFFFF)

    def _gap(self, key: tuple[str, int, int], seq: int, expected: int) -> None:
        missing = (seq - expected) & 0xFFFFFFFF
        who = (key[0], key[2])
        self.stats.sequence_gaps[who] += 1
        if missing < 0x80000000:  # otherwise a reordered/late datagram or an exporter restart
            self.stats.sequence_lost[who] += missing

    def _remember_seq(self, key: tuple[str, int, int], value: int) -> None:
        if key not in self._next_seq and len(self._next_seq) >= _MAX_SEQ_KEYS:
            self._next_seq.pop(next(iter(self._next_seq)))
        self._next_seq[key] = value

    # -- sets --------------------------------------------------------------------------------
    def _sets(
        self,
        data: bytes,
        off: int,
        end: int,
        addr: str,
        version: int,
        domain: int,
        export_ms: int,
        uptime: int,
    ) -> tuple[int, bool]:
        """Walk the sets of one v9/IPFIX message; returns (data records, all sets known)."""
        template_set, options_set = (0, 1) if version == 9 else (2, 3)
        by_domain = self.cache.by_domain
        dkey = (addr, version, domain)
        templates = by_domain.get(dkey) or {}
        groups = self._groups
        unpack = _SET_HDR.unpack_from
        records = 0
        complete = True
        mv = memoryview(data)
        ctx_id = -1
        while end - off >= 4:
            sid, slen = unpack(data, off)
            if slen < 4 or off + slen > end:
                self.stats.errors["set_length"] += 1
                complete = False
                break
            start = off + 4
            off += slen
            if sid >= 256:
                compiled = templates.get(sid)
                if compiled is not None and compiled.plain:
                    # hot path: a fixed-length data template
                    count = (slen - 4) // compiled.reclen
                    if count:
                        if ctx_id < 0:
                            ctx_id = self._context(addr, version, domain, export_ms, uptime)
                        group = groups.get(id(compiled))
                        if group is None:
                            group = groups[id(compiled)] = (compiled, [], [], [])
                        group[1].append(mv[start : start + count * compiled.reclen])
                        group[2].append(count)
                        group[3].append(ctx_id)
                        records += count
                    continue
                key = (addr, version, domain, sid)
                if compiled is None:
                    self.stats.template_misses += 1
                    complete = False
                    dropped = self._pending.add(key, bytes(mv[start:off]), export_ms, uptime)
                    self.stats.pending_dropped += dropped
                else:
                    records += self._data(compiled, mv, start, off, key, export_ms, uptime)
                    if compiled.is_options:
                        ctx_id = -1  # sampling / system init time may have changed
            elif sid in (template_set, options_set):
                # exporters repeat their templates every few datagrams: skip a set identical
                # to the last one seen from this domain while what it taught is still cached
                mkey = (dkey, sid, data[start:off])
                memo = self._template_memo.get(mkey)
                if memo is not None:
                    cached = self.cache.templates
                    if all(cached.get(k) is c for k, c in memo):
                        continue
                learned = self._templates(
                    data, start, off, addr, version, domain, sid == options_set
                )
                if learned is None or len(mkey[2]) > _MEMO_MAX_BODY:
                    self._template_memo.pop(mkey, None)
                else:
                    if len(self._template_memo) >= _MEMO_MAX_SETS:
                        self._template_memo.pop(next(iter(self._template_memo)))
                    self._template_memo[mkey] = learned
                templates = by_domain.get(dkey) or {}
            else:
                self.stats.errors["reserved_set_id"] += 1
        self.stats.records[version] += records
        return records, complete

    def _context(self, addr: str, version: int, domain: int, export_ms: int, uptime: int) -> int:
        """Row index of this header's context (exporter, times, sampling) for the batch."""
        known = self._domain_values((addr, version, domain))
        self._ctx.append((known[0], version, export_ms, uptime, known[1], known[2]))
        return len(self._ctx) - 1

    def _domain_values(self, dkey: DomainKey) -> tuple[int, int, int]:
        """(exporter index, system init time, sampling) of a domain for this batch."""
        known = self._domain_ctx.get(dkey)
        if known is None:
            addr, _, domain = dkey
            state = self.cache.domains.get(dkey)
            sampling = state.sampling if state is not None else 0
            if not sampling:
                sampling = self.default_sampling.get(addr, 0)
            sys_init = state.sys_init_ms if state is not None else -1
            exp = self._exporters.setdefault((addr, domain), len(self._exporters))
            known = self._domain_ctx[dkey] = (exp, sys_init, sampling)
        return known

    def _data(
        self,
        compiled: Compiled,
        mv: memoryview,
        start: int,
        end: int,
        key: TemplateKey,
        export_ms: int,
        uptime: int,
    ) -> int:
        body: Any
        if compiled.variable:
            body, count = self._normalize(compiled, mv, start, end)
        else:
            count = (end - start) // compiled.reclen
            body = mv[start : start + count * compiled.reclen]
        if not count:
            return 0
        addr, version, domain, _ = key
        if compiled.is_options:
            self._options(compiled, body, (addr, version, domain))
            self._options_records += count
            return 0
        ctx_id = self._context(addr, version, domain, export_ms, uptime)
        group = self._groups.get(id(compiled))
        if group is None:
            group = self._groups[id(compiled)] = (compiled, [], [], [])
        group[1].append(body)
        group[2].append(count)
        group[3].append(ctx_id)
        return count

    def _normalize(
        self, compiled: Compiled, mv: memoryview, start: int, end: int
    ) -> tuple[bytes, int]:
        """Copy the fixed-length fields of variable-length records (cold path: rare templates)."""
        parts: list[bytes] = []
        pos = start
        count = 0
        minimum = compiled.reclen
        while end - pos >= minimum:
            mark = len(parts)
            ok = True
            for n, var in compiled.segments:
                if var:
                    if pos >= end:
                        ok = False
                        break
                    length = mv[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > end:
                            ok = False
                            break
                        length = (mv[pos] << 8) | mv[pos + 1]
                        pos += 2
                    pos += length
                    if pos > end:
                        ok = False
                        break
                else:
                    if pos + n > end:
                        ok = False
                        break
                    parts.append(bytes(mv[pos : pos + n]))
                    pos += n
            if not ok:
                del parts[mark:]
                self.stats.errors["record_truncated"] += 1
                break
            count += 1
        return b"".join(parts), count

    def _options(self, compiled: Compiled, body: Any, dkey: DomainKey) -> None:
        """Options data: sampling interval and IPFIX system init time (few records, cold)."""
        values = _options_values(compiled, body)
        if values is None:
            return
        rate, init = values
        state = self.cache.domain(dkey)
        self._domain_ctx.pop(dkey, None)  # this batch's later headers see the new state
        if rate and rate != state.sampling:
            state.sampling = rate
            self.cache.dirty = True
            self.cache.changes += 1
        if init is not None and init != state.sys_init_ms:
            state.sys_init_ms = init
            self.cache.dirty = True
            self.cache.changes += 1

    def _templates(
        self,
        data: bytes,
        pos: int,
        end: int,
        addr: str,
        version: int,
        domain: int,
        options: bool,
    ) -> list[tuple[TemplateKey, Compiled]] | None:
        """Learn (or withdraw) the templates of one template / options template set.

        Returns what was learned, or None when the set also withdrew templates or had errors
        (such a set must be looked at again whenever it is repeated)."""
        errors = self.stats.errors
        learned: list[tuple[TemplateKey, Compiled]] = []
        clean = True
        header = 6 if options and version == 9 else 4
        while end - pos >= header:
            if options and version == 9:
                tid, scope_len, opt_len = struct.unpack_from("!HHH", data, pos)
                pos += 6
                if tid == 0 and scope_len == 0 and opt_len == 0:
                    return learned if clean else None  # padding
                if scope_len % 4 or opt_len % 4 or pos + scope_len + opt_len > end:
                    errors["template_truncated"] += 1
                    return None
                scope_count = scope_len // 4
                count = scope_count + opt_len // 4
                raw = struct.unpack_from(f"!{2 * count}H", data, pos)
                pos += 4 * count
                fields: tuple[FieldSpec, ...] = tuple(
                    (raw[2 * i], raw[2 * i + 1], 0) for i in range(count)
                )
            else:
                tid, count = _SET_HDR.unpack_from(data, pos)
                pos += 4
                scope_count = 0
                if options and count:
                    if pos + 2 > end:
                        errors["template_truncated"] += 1
                        return None
                    scope_count = _U16.unpack_from(data, pos)[0]
                    pos += 2
                if tid == 0 and count == 0:
                    return learned if clean else None  # padding
                if count == 0:
                    if version == 10:
                        self._withdraw(addr, domain, tid, options)
                        clean = False
                    else:
                        errors["template_zero_length"] += 1
                    clean = False
                    continue
                parsed: list[FieldSpec] = []
                for _ in range(count):
                    if pos + 4 > end:
                        errors["template_truncated"] += 1
                        return None
                    ie, length = _SET_HDR.unpack_from(data, pos)
                    pos += 4
                    enterprise = 0
                    if version == 10 and ie & 0x8000:
                        if pos + 4 > end:
                            errors["template_truncated"] += 1
                            return None
                        enterprise = _U32.unpack_from(data, pos)[0]
                        ie &= 0x7FFF
                        pos += 4
                    parsed.append((ie, length, enterprise))
                fields = tuple(parsed)
                if options and (scope_count == 0 or scope_count > count):
                    errors["template_scope"] += 1
                    clean = False
                    continue
            if tid < 256:
                errors["template_id"] += 1
                clean = False
                continue
            if version == 9 and any(f[1] == 0xFFFF for f in fields):
                errors["template_field_length"] += 1
                clean = False
                continue
            try:
                compiled = compile_template(fields, scope_count, options)
            except TemplateError as exc:
                errors[exc.kind] += 1
                clean = False
                continue
            key = (addr, version, domain, tid)
            self.cache.put(key, compiled)
            learned.append((key, compiled))
            for body, export_ms, uptime in self._pending.take(key):
                self.stats.pending_decoded += 1
                n = self._data(compiled, memoryview(body), 0, len(body), key, export_ms, uptime)
                self.stats.records[version] += n
        return learned if clean else None

    def _withdraw(self, addr: str, domain: int, tid: int, options: bool) -> None:
        if tid in (2, 3):  # RFC 7011 8.1: withdraw all data (2) or options (3) templates
            self.cache.withdraw_all((addr, 10, domain), tid == 3)
        elif tid >= 256:
            self.cache.withdraw((addr, 10, domain, tid))
        else:
            self.stats.errors["template_id"] += 1

    # -- conversion --------------------------------------------------------------------------
    def _build_fast(self, parts: list[dict[str, np.ndarray]]) -> None:
        """Records of the array path: per template, every record's offset computed from
        its set's, one gather from the joined datagrams, one conversion."""
        if len(self._fast_sets) == 1:
            starts, counts, tmpl, rows = self._fast_sets[0]
        else:
            starts, counts, tmpl, rows = (
                np.concatenate([f[i] for f in self._fast_sets]) for i in range(4)
            )
        if not len(starts):
            return
        ctx = self._fast_ctx[0] if len(self._fast_ctx) == 1 else np.hstack(self._fast_ctx)
        buf = self._fast_buf
        for t in np.unique(tmpl).tolist():
            compiled = self._fast_templates[t]
            sel = tmpl == t
            c = counts[sel]
            total = int(c.sum())
            first = np.cumsum(c) - c
            rep = np.repeat(np.arange(len(c)), c)
            offsets = starts[sel][rep] + compiled.reclen * (np.arange(total) - first[rep])
            raw = gather(buf, offsets, compiled.dtype)
            parts.append(convert(raw, compiled, _Ctx(ctx, rows[sel], c, total)))
            if not (compiled.has(IE_SRC_V4) and compiled.has(IE_DST_V4)):
                self._all_v4 = False

    def _build(self) -> FlowBatch:
        parts = self._parts
        if self._fast_sets:
            self._build_fast(parts)
        if self._groups:
            rows = np.array(self._ctx, dtype=np.int64).T.copy()  # (6, contexts)
            for compiled, bodies, counts, ctx_ids in self._groups.values():
                raw = np.frombuffer(b"".join(bodies), dtype=compiled.dtype)
                parts.append(convert(raw, compiled, _Ctx(rows, ctx_ids, counts, len(raw))))
                if not (compiled.has(IE_SRC_V4) and compiled.has(IE_DST_V4)):
                    self._all_v4 = False
        exporters = tuple(self._exporters)
        if not parts:
            return FlowBatch(FlowBatch.empty().columns, exporters)
        if len(parts) == 1:
            cols = parts[0]
        else:
            cols = {n: np.concatenate([p[n] for p in parts]) for n in COLUMNS}
        return FlowBatch(cols, exporters, self._all_v4)


_gather = gather


class _Events:
    """Event rows of the array path as tuples of plain ints, converted a chunk at a time: the
    walk over them usually stops early (at the first set that changes state), so the whole
    list is rarely needed."""

    _CHUNK = 256

    def __init__(self, cols: list[np.ndarray]) -> None:
        self.cols = cols
        self.n = len(cols[0])
        self._start = 0
        self._rows: list[tuple[int, ...]] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, ...]:
        k = i - self._start
        if not 0 <= k < len(self._rows):
            stop = min(self.n, i + self._CHUNK)
            self._rows = list(zip(*(c[i:stop].tolist() for c in self.cols), strict=True))
            self._start, k = i, 0
        return self._rows[k]


class _Ctx:
    """Header context (exporter, version, times, sampling) of one template group's records:
    one context row per set, expanded per record only for columns that actually vary (a
    column that is the same for every set is handed out as a scalar)."""

    def __init__(self, rows: np.ndarray, set_rows: Any, counts: Any, n: int) -> None:
        self.rows = rows  # (6, contexts) int64
        self.set_rows = np.asarray(set_rows, np.intp)
        self.counts = np.asarray(counts, np.int64)
        self.n = n
        self._values: dict[int, int | np.ndarray] = {}

    def value(self, j: int) -> int | np.ndarray:
        """Column ``j`` as a scalar when constant over the group, else one value per record."""
        got = self._values.get(j)
        if got is None:
            per_set = self.rows[j, self.set_rows]
            first = int(per_set[0])
            got = first if bool((per_set == first).all()) else np.repeat(per_set, self.counts)
            self._values[j] = got
        return got

    def col(self, j: int) -> np.ndarray:
        got = self.value(j)
        return np.full(self.n, got, np.int64) if isinstance(got, int) else got

    def all_nonneg(self, j: int) -> bool:
        return bool((self.rows[j, self.set_rows] >= 0).all())


_C_EXPORTER, _C_VERSION, _C_EXPORT_MS, _C_UPTIME, _C_SYS_INIT, _C_SAMPLING = range(6)


def _uptime_ms(export: int | np.ndarray, uptime: int | np.ndarray, value: np.ndarray) -> np.ndarray:
    """v5/v9 flow time: relative to the header's sysUptime, a 32-bit counter that wraps after
    ~49.7 days, so the difference is taken modulo 2**32 and read as a signed offset."""
    diff = (uptime - value) & 0xFFFFFFFF
    diff -= (diff >> 31) << 32
    return export - diff


def _domains(items: list[tuple[bytes, str]], w: Walk) -> tuple[np.ndarray, list[DomainKey]]:
    """Index of each datagram's (exporter address, version, domain) and the keys: Python
    per datagram only to number the addresses, skipped when they are all the same."""
    n = len(items)
    addrs = [a for _, a in items]
    if addrs.count(addrs[0]) == n:
        names = [addrs[0]]
        aidx = np.zeros(n, np.int64)
    else:
        amap: dict[str, int] = {}
        aidx = np.fromiter((amap.setdefault(a, len(amap)) for a in addrs), np.int64, n)
        names = list(amap)
    key = (aidx << 40) | ((w.version & 0xFF) << 32) | (w.domain & 0xFFFFFFFF)
    uniq, inv = np.unique(key, return_inverse=True)
    keys = [(names[k >> 40], (k >> 32) & 0xFF, k & 0xFFFFFFFF) for k in uniq.tolist()]
    return inv.reshape(-1).astype(np.int64), keys


def _options_values(compiled: Compiled, body: Any) -> tuple[int, int | None] | None:
    """(sampling rate or 0, system init time or None) announced by options data; None when
    the body holds no whole record. The last record wins."""
    recs = np.frombuffer(body, dtype=compiled.dtype)
    if not len(recs):
        return None
    last = recs[-1]

    def val(ie: int) -> int:
        return _scalar(last, ie, compiled.lengths[ie]) if compiled.has(ie) else 0

    rate = val(IE_SAMPLING_INTERVAL) or val(IE_SAMPLER_RANDOM_INTERVAL)
    if not rate and val(IE_SAMPLING_PACKET_INTERVAL):
        interval = val(IE_SAMPLING_PACKET_INTERVAL)
        rate = (interval + val(IE_SAMPLING_PACKET_SPACE)) // interval
    if not rate and val(IE_SAMPLING_SIZE):
        rate = val(IE_SAMPLING_POPULATION) // val(IE_SAMPLING_SIZE)
    init = val(IE_SYS_INIT_MS) if compiled.has(IE_SYS_INIT_MS) else None
    return min(rate, 0xFFFFFFFF), init


def _scalar(rec: Any, ie: int, length: int) -> int:
    value = rec[f"e{ie}"]
    if length in (1, 2, 4, 8):
        return int(value)
    return int.from_bytes(bytes(value), "big")


def _column(raw: np.ndarray, compiled: Compiled, ie: int) -> np.ndarray:
    """An unsigned element as uint64, whatever its (reduced-size) encoding."""
    length = compiled.lengths[ie]
    col = raw[f"e{ie}"]
    if length in (1, 2, 4, 8):
        return col.astype(np.uint64)
    out = np.zeros(len(raw), np.uint64)
    for i in range(length):
        out = (out << np.uint64(8)) | col[:, i].astype(np.uint64)
    return out


def _address(
    raw: np.ndarray, v4: int, v6: int, compiled: Compiled, n: int
) -> tuple[np.ndarray, np.ndarray]:
    if compiled.has(v4):
        return np.zeros(n, np.uint64), raw[f"e{v4}"].astype(np.uint64) | V4_MAPPED_PREFIX
    if compiled.has(v6):
        halves = np.ascontiguousarray(raw[f"e{v6}"]).view(">u8").reshape(n, 2)
        return halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)
    return np.zeros(n, np.uint64), np.zeros(n, np.uint64)


def _ntp_ms(col: np.ndarray) -> np.ndarray:
    secs = (col >> np.uint64(32)).astype(np.int64) - _NTP_EPOCH
    frac = ((col & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
    return secs * 1000 + frac.astype(np.int64)


def _time(
    raw: np.ndarray, compiled: Compiled, ctx: _Ctx, ies: tuple[int, int, int, int, int, int]
) -> np.ndarray:
    """Absolute UTC epoch ms for flow start or end, from whichever element the template has."""
    ms, s, us, ns, delta, uptime_ie = ies
    if compiled.has(ms):
        return raw[f"e{ms}"].astype(np.int64)
    if compiled.has(s):
        return raw[f"e{s}"].astype(np.int64) * 1000
    if compiled.has(us):
        return _ntp_ms(raw[f"e{us}"].astype(np.uint64))
    if compiled.has(ns):
        return _ntp_ms(raw[f"e{ns}"].astype(np.uint64))
    export = ctx.value(_C_EXPORT_MS)
    if compiled.has(delta):
        return export - raw[f"e{delta}"].astype(np.int64) // 1000
    if compiled.has(uptime_ie):
        value = raw[f"e{uptime_ie}"].astype(np.int64)
        uptime = ctx.value(_C_UPTIME)
        v9_time = _uptime_ms(export, uptime, value)
        if ctx.all_nonneg(_C_UPTIME):
            return v9_time
        # IPFIX: relative to systemInitTimeMilliseconds from options data, if announced.
        has_uptime = uptime >= 0
        sys_init = ctx.value(_C_SYS_INIT)
        ipfix = np.where(sys_init >= 0, sys_init + value, export)
        return np.where(has_uptime, v9_time, ipfix)
    return ctx.col(_C_EXPORT_MS)


_FIRST = (IE_START_MS, IE_START_S, IE_START_US, IE_START_NS, IE_START_DELTA_US, IE_FIRST_UPTIME)
_LAST = (IE_END_MS, IE_END_S, IE_END_US, IE_END_NS, IE_END_DELTA_US, IE_LAST_UPTIME)


def _unsigned(raw: np.ndarray, compiled: Compiled, ie: int, dtype: Any) -> np.ndarray:
    """An unsigned element converted to ``dtype`` (one pass for the usual lengths); zeros
    when the template lacks it."""
    length = compiled.lengths.get(ie)
    if length is None:
        return np.zeros(len(raw), dtype)
    if length in (1, 2, 4, 8):
        return raw[f"e{ie}"].astype(dtype)
    return _column(raw, compiled, ie).astype(dtype)


def convert(raw: np.ndarray, compiled: Compiled, ctx: _Ctx) -> dict[str, np.ndarray]:
    """Raw records of one template (+ header context) → batch columns."""
    n = len(raw)
    has = compiled.lengths
    out: dict[str, np.ndarray] = {
        "exporter": ctx.col(_C_EXPORTER).astype(np.uint32),
        "version": ctx.col(_C_VERSION).astype(np.uint16),
    }
    out["src_hi"], out["src_lo"] = _address(raw, IE_SRC_V4, IE_SRC_V6, compiled, n)
    out["dst_hi"], out["dst_lo"] = _address(raw, IE_DST_V4, IE_DST_V6, compiled, n)
    out["protocol"] = _unsigned(raw, compiled, IE_PROTOCOL, np.uint8)
    out["tos"] = _unsigned(raw, compiled, IE_TOS, np.uint8)
    out["tcp_flags"] = _unsigned(raw, compiled, IE_TCP_FLAGS, np.uint8)  # low byte of 2
    out["src_port"] = _unsigned(raw, compiled, IE_SRC_PORT, np.uint16)
    dst_port = _unsigned(raw, compiled, IE_DST_PORT, np.uint16)
    for icmp in (IE_ICMP_V4, IE_ICMP_V6):
        if icmp in has:
            code = raw[f"e{icmp}"].astype(np.uint16)
            proto = out["protocol"]
            is_icmp = (proto == 1) | (proto == 58)
            if IE_DST_PORT in has:
                dst_port = np.where(is_icmp & (code != 0), code, dst_port)
            else:
                dst_port = np.where(is_icmp, code, 0).astype(np.uint16)
    out["dst_port"] = dst_port
    out["input_if"] = _unsigned(raw, compiled, IE_INPUT_IF, np.uint32)
    out["output_if"] = _unsigned(raw, compiled, IE_OUTPUT_IF, np.uint32)
    packets_ie = IE_PACKETS if IE_PACKETS in has else IE_PACKETS_TOTAL
    octets_ie = IE_OCTETS if IE_OCTETS in has else IE_OCTETS_TOTAL
    packets = _unsigned(raw, compiled, packets_ie, np.uint64)
    octets = _unsigned(raw, compiled, octets_ie, np.uint64)
    own = [ie for ie in (IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL) if ie in has]
    announced = ctx.value(_C_SAMPLING)
    if isinstance(announced, int) and not own:
        rate = min(max(announced, 1), 0xFFFFFFFF)  # 0: not announced → 1
        out["sampling"] = np.full(n, rate, np.uint32)
        if rate != 1:
            packets *= np.uint64(rate)
            octets *= np.uint64(rate)
    else:
        sampling = ctx.col(_C_SAMPLING).astype(np.uint64)
        for ie in own:
            value = _column(raw, compiled, ie)
            sampling = np.where(value > 0, value, sampling)
        sampling = np.minimum(np.where(sampling == 0, np.uint64(1), sampling), 0xFFFFFFFF)
        out["sampling"] = sampling.astype(np.uint32)
        packets *= sampling
        octets *= sampling
    out["packets"] = packets
    out["octets"] = octets
    out["first_ms"] = _time(raw, compiled, ctx, _FIRST)
    out["last_ms"] = _time(raw, compiled, ctx, _LAST)
    return out
