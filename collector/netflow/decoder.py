"""Batch decoder for NetFlow v5, NetFlow v9 and IPFIX (RFC 7011).

Why hand-written: speed, and correctness across exporters. Per-record Python objects (the
PyPI ``netflow`` package, scapy's dissector) top out at tens or hundreds of thousands of
records per second, and ``netflow`` keys templates by template ID only, so two exporters using
the same ID overwrite each other. Here Python only walks datagram and set headers; each data
set becomes one slice of bytes, all slices for one compiled template are joined and decoded
with one ``np.frombuffer``, and the conversion to :data:`FLOW_DTYPE` is column arithmetic.

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

from collector.netflow.batch import FLOW_DTYPE, V4_MAPPED_PREFIX, FlowBatch
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
_NTP_EPOCH = 2208988800
_MAX_SEQ_KEYS = 65536


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
    ) -> None:
        self.cache = cache if cache is not None else TemplateCache()
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

    # -- public ------------------------------------------------------------------------------
    def decode(self, datagrams: Iterable[tuple[bytes, str]]) -> FlowBatch:
        """Decode datagrams (payload, exporter address); never raises on bad input."""
        self._groups = {}
        self._ctx = []
        self._exporters = {}
        errors = self.stats.errors
        for data, addr in datagrams:
            try:
                if len(data) < 4:
                    errors["short_header"] += 1
                    continue
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
        try:
            return self._build()
        except Exception:
            errors["internal"] += 1
            log.exception("netflow batch conversion failed")
            return FlowBatch.empty()
        finally:
            self._groups = {}
            self._ctx = []

    def pending_sets(self) -> int:
        return len(self._pending.entries)

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
            elif sid in (template_set, options_set):
                self._templates(data, start, off, addr, version, domain, sid == options_set)
                templates = by_domain.get(dkey) or {}
                ctx_id = -1  # options data may have changed sampling / system init time
            else:
                self.stats.errors["reserved_set_id"] += 1
        self.stats.records[version] += records
        return records, complete

    def _context(self, addr: str, version: int, domain: int, export_ms: int, uptime: int) -> int:
        """Row index of this header's context (exporter, times, sampling) for the batch."""
        state = self.cache.domains.get((addr, version, domain))
        sampling = state.sampling if state is not None else 0
        if not sampling:
            sampling = self.default_sampling.get(addr, 0)
        sys_init = state.sys_init_ms if state is not None else -1
        exp = self._exporters.setdefault((addr, domain), len(self._exporters))
        self._ctx.append((exp, version, export_ms, uptime, sys_init, sampling))
        return len(self._ctx) - 1

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
        recs = np.frombuffer(body, dtype=compiled.dtype)
        if not len(recs):
            return
        last = recs[-1]

        def val(ie: int) -> int:
            return _scalar(last, ie, compiled.lengths[ie]) if compiled.has(ie) else 0

        rate = val(IE_SAMPLING_INTERVAL) or val(IE_SAMPLER_RANDOM_INTERVAL)
        if not rate and val(IE_SAMPLING_PACKET_INTERVAL):
            interval = val(IE_SAMPLING_PACKET_INTERVAL)
            rate = (interval + val(IE_SAMPLING_PACKET_SPACE)) // interval
        if not rate and val(IE_SAMPLING_SIZE):
            rate = val(IE_SAMPLING_POPULATION) // val(IE_SAMPLING_SIZE)
        state = self.cache.domain(dkey)
        rate = min(rate, 0xFFFFFFFF)
        if rate and rate != state.sampling:
            state.sampling = rate
            self.cache.dirty = True
        if compiled.has(IE_SYS_INIT_MS):
            init = val(IE_SYS_INIT_MS)
            if init != state.sys_init_ms:
                state.sys_init_ms = init
                self.cache.dirty = True

    def _templates(
        self,
        data: bytes,
        pos: int,
        end: int,
        addr: str,
        version: int,
        domain: int,
        options: bool,
    ) -> None:
        """Learn (or withdraw) the templates of one template / options template set."""
        errors = self.stats.errors
        header = 6 if options and version == 9 else 4
        while end - pos >= header:
            if options and version == 9:
                tid, scope_len, opt_len = struct.unpack_from("!HHH", data, pos)
                pos += 6
                if tid == 0 and scope_len == 0 and opt_len == 0:
                    return  # padding
                if scope_len % 4 or opt_len % 4 or pos + scope_len + opt_len > end:
                    errors["template_truncated"] += 1
                    return
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
                        return
                    scope_count = _U16.unpack_from(data, pos)[0]
                    pos += 2
                if tid == 0 and count == 0:
                    return  # padding
                if count == 0:
                    if version == 10:
                        self._withdraw(addr, domain, tid, options)
                    else:
                        errors["template_zero_length"] += 1
                    continue
                parsed: list[FieldSpec] = []
                for _ in range(count):
                    if pos + 4 > end:
                        errors["template_truncated"] += 1
                        return
                    ie, length = _SET_HDR.unpack_from(data, pos)
                    pos += 4
                    enterprise = 0
                    if version == 10 and ie & 0x8000:
                        if pos + 4 > end:
                            errors["template_truncated"] += 1
                            return
                        enterprise = _U32.unpack_from(data, pos)[0]
                        ie &= 0x7FFF
                        pos += 4
                    parsed.append((ie, length, enterprise))
                fields = tuple(parsed)
                if options and (scope_count == 0 or scope_count > count):
                    errors["template_scope"] += 1
                    continue
            if tid < 256:
                errors["template_id"] += 1
                continue
            if version == 9 and any(f[1] == 0xFFFF for f in fields):
                errors["template_field_length"] += 1
                continue
            try:
                compiled = compile_template(fields, scope_count, options)
            except TemplateError as exc:
                errors[exc.kind] += 1
                continue
            key = (addr, version, domain, tid)
            self.cache.put(key, compiled)
            for body, export_ms, uptime in self._pending.take(key):
                self.stats.pending_decoded += 1
                n = self._data(compiled, memoryview(body), 0, len(body), key, export_ms, uptime)
                self.stats.records[version] += n

    def _withdraw(self, addr: str, domain: int, tid: int, options: bool) -> None:
        if tid in (2, 3):  # RFC 7011 8.1: withdraw all data (2) or options (3) templates
            self.cache.withdraw_all((addr, 10, domain), tid == 3)
        elif tid >= 256:
            self.cache.withdraw((addr, 10, domain, tid))
        else:
            self.stats.errors["template_id"] += 1

    # -- conversion --------------------------------------------------------------------------
    def _build(self) -> FlowBatch:
        parts = []
        if not self._groups:
            return FlowBatch(np.zeros(0, FLOW_DTYPE), tuple(self._exporters))
        rows = np.array(self._ctx, dtype=_CTX_DTYPE)
        for compiled, bodies, counts, ctx_ids in self._groups.values():
            raw = np.frombuffer(b"".join(bodies), dtype=compiled.dtype)
            if len(ctx_ids) == 1:
                ctx = np.repeat(rows[ctx_ids[0] : ctx_ids[0] + 1], counts[0])
            else:
                ctx = rows[np.repeat(np.array(ctx_ids), counts)]
            parts.append(convert(raw, compiled, ctx))
        exporters = tuple(self._exporters)
        if not parts:
            return FlowBatch(np.zeros(0, FLOW_DTYPE), exporters)
        records = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return FlowBatch(records, exporters)


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


def _address(raw: np.ndarray, v4: int, v6: int, compiled: Compiled, n: int) -> tuple[Any, Any]:
    if compiled.has(v4):
        return 0, raw[f"e{v4}"].astype(np.uint64) | V4_MAPPED_PREFIX
    if compiled.has(v6):
        halves = np.ascontiguousarray(raw[f"e{v6}"]).view(">u8").reshape(n, 2)
        return halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)
    return 0, 0


def _ntp_ms(col: np.ndarray) -> np.ndarray:
    secs = (col >> np.uint64(32)).astype(np.int64) - _NTP_EPOCH
    frac = ((col & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
    return secs * 1000 + frac.astype(np.int64)


def _time(
    raw: np.ndarray, compiled: Compiled, ctx: np.ndarray, ies: tuple[int, int, int, int, int, int]
) -> np.ndarray:
    """Absolute UTC epoch ms for flow start or end, from whichever element the template has."""
    ms, s, us, ns, delta, uptime_ie = ies
    export = ctx["export_ms"]
    if compiled.has(ms):
        return raw[f"e{ms}"].astype(np.int64)
    if compiled.has(s):
        return raw[f"e{s}"].astype(np.int64) * 1000
    if compiled.has(us):
        return _ntp_ms(raw[f"e{us}"].astype(np.uint64))
    if compiled.has(ns):
        return _ntp_ms(raw[f"e{ns}"].astype(np.uint64))
    if compiled.has(delta):
        return export - raw[f"e{delta}"].astype(np.int64) // 1000
    if compiled.has(uptime_ie):
        value = raw[f"e{uptime_ie}"].astype(np.int64)
        uptime = ctx["uptime"]
        # v5/v9: relative to the header's sysUptime; a 32-bit counter that wraps after ~49.7
        # days, so take the difference modulo 2**32 and read it as a signed offset.
        diff = (uptime - value) & 0xFFFFFFFF
        diff -= (diff >> 31) << 32
        v9_time = export - diff
        has_uptime = uptime >= 0
        if has_uptime.all():
            return v9_time
        # IPFIX: relative to systemInitTimeMilliseconds from options data, if announced.
        sys_init = ctx["sys_init"]
        ipfix = np.where(sys_init >= 0, sys_init + value, export)
        return np.where(has_uptime, v9_time, ipfix)
    return export.copy()


_FIRST = (IE_START_MS, IE_START_S, IE_START_US, IE_START_NS, IE_START_DELTA_US, IE_FIRST_UPTIME)
_LAST = (IE_END_MS, IE_END_S, IE_END_US, IE_END_NS, IE_END_DELTA_US, IE_LAST_UPTIME)


def convert(raw: np.ndarray, compiled: Compiled, ctx: np.ndarray) -> np.ndarray:
    """Raw records of one template (+ per-record header context) → FLOW_DTYPE, vectorized."""
    n = len(raw)
    out = np.zeros(n, FLOW_DTYPE)
    has = compiled.lengths
    out["exporter"] = ctx["exporter"]
    out["version"] = ctx["version"]
    out["src_hi"], out["src_lo"] = _address(raw, IE_SRC_V4, IE_SRC_V6, compiled, n)
    out["dst_hi"], out["dst_lo"] = _address(raw, IE_DST_V4, IE_DST_V6, compiled, n)
    if IE_PROTOCOL in has:
        out["protocol"] = raw["e4"]
    if IE_TOS in has:
        out["tos"] = raw["e5"]
    if IE_TCP_FLAGS in has:
        out["tcp_flags"] = raw["e6"] & 0xFF
    if IE_SRC_PORT in has:
        out["src_port"] = raw["e7"]
    if IE_DST_PORT in has:
        out["dst_port"] = raw["e11"]
    for icmp in (IE_ICMP_V4, IE_ICMP_V6):
        if icmp in has:
            code = raw[f"e{icmp}"]
            proto = out["protocol"]
            is_icmp = (proto == 1) | (proto == 58)
            if IE_DST_PORT in has:
                out["dst_port"] = np.where(is_icmp & (code != 0), code, out["dst_port"])
            else:
                out["dst_port"] = np.where(is_icmp, code, 0)
    if IE_INPUT_IF in has:
        out["input_if"] = _column(raw, compiled, IE_INPUT_IF)
    if IE_OUTPUT_IF in has:
        out["output_if"] = _column(raw, compiled, IE_OUTPUT_IF)
    packets: Any = 0
    octets: Any = 0
    if IE_PACKETS in has:
        packets = _column(raw, compiled, IE_PACKETS)
    elif IE_PACKETS_TOTAL in has:
        packets = _column(raw, compiled, IE_PACKETS_TOTAL)
    if IE_OCTETS in has:
        octets = _column(raw, compiled, IE_OCTETS)
    elif IE_OCTETS_TOTAL in has:
        octets = _column(raw, compiled, IE_OCTETS_TOTAL)
    sampling = ctx["sampling"].astype(np.uint64)
    for ie in (IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL):
        if ie in has:
            own = _column(raw, compiled, ie)
            sampling = np.where(own > 0, own, sampling)
    sampling = np.where(sampling == 0, np.uint64(1), sampling)
    out["sampling"] = np.minimum(sampling, 0xFFFFFFFF)
    out["packets"] = packets * sampling
    out["octets"] = octets * sampling
    out["first_ms"] = _time(raw, compiled, ctx, _FIRST)
    out["last_ms"] = _time(raw, compiled, ctx, _LAST)
    return out
