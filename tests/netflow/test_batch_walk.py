"""The array walk of v9/IPFIX sets must decode exactly what the per-datagram walk decodes.

The per-datagram path (``Decoder(batch_sets=False)``) is the reference: it handles every set
in wire order. The array path judges sets against the template state and hands datagrams that
change it (new or redefined templates, withdrawals, new options values, data before its
template, variable-length records, malformed headers) to that same path at their place in the
order. Streams below mix all of those, from two exporters and two domains, cut into batches
at random places; records, counters and the template cache must come out identical.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
from typing import Any

import builders as b
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.netflow.decoder import Decoder
from collector.netflow.walk import walk

A = "192.0.2.1"
B = "192.0.2.2"
V6_FIELDS = [(27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (22, 4), (21, 4)]
ALT_FIELDS = [(12, 4), (8, 4), (2, 4), (1, 4), (22, 4), (21, 4)]  # same IDs, other layout
VAR_FIELDS = [(8, 4), (82, 0xFFFF), (12, 4), (2, 4), (1, 4)]


def _v6_record(i: int) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET6, f"2001:db8::{i + 1:x}")
        + socket.inet_pton(socket.AF_INET6, "2001:db8:1::2")
        + struct.pack("!HHBIIII", 5000 + i, 1194, 17, 2, 200, 90_000, 95_000)
    )


def _alt_record(i: int) -> bytes:
    return socket.inet_aton("8.8.8.8") + socket.inet_aton(f"10.9.9.{i + 1}") + b"\0\0\0\1" * 4


def _var_record(i: int) -> bytes:
    name = b"x" * (i * 100)  # 300 bytes takes the 3-byte length form
    size = bytes([len(name)]) if len(name) < 255 else b"\xff" + struct.pack("!H", len(name))
    return socket.inet_aton("10.1.1.1") + size + name + b"\x08\x08\x04\x04" * 3


# layouts a template ID can be (re)defined with, and a record maker for each
LAYOUTS: dict[str, tuple[list[Any], Any]] = {
    "v4": (b.V4_FIELDS, lambda i: b.v4_record(dport=i + 1, src=f"10.0.0.{i + 1}")),
    "v6": (V6_FIELDS, _v6_record),
    "alt": (ALT_FIELDS, _alt_record),
    "var": (VAR_FIELDS, _var_record),
}

set_spec = st.one_of(
    st.tuples(st.just("tpl"), st.sampled_from([256, 257]), st.sampled_from(sorted(LAYOUTS))),
    st.tuples(st.just("data"), st.sampled_from([256, 257, 258]), st.integers(0, 4)),
    st.tuples(st.just("data"), st.sampled_from([256, 257]), st.integers(1, 4)),
    st.tuples(st.just("opt_tpl"), st.just(500), st.just("")),
    st.tuples(st.just("opt_data"), st.just(500), st.sampled_from([1, 10, 100])),
    st.tuples(st.just("withdraw"), st.sampled_from([256, 257, 2]), st.just("")),
    st.tuples(st.just("reserved"), st.just(100), st.just("")),
)
datagram_spec = st.tuples(
    st.sampled_from([9, 10]),
    st.sampled_from([A, A, A, B]),
    st.sampled_from([0, 0, 0, 1]),
    st.lists(set_spec, min_size=0, max_size=5),
    st.sampled_from(["ok", "ok", "ok", "ok", "seq_jump", "truncate", "junk"]),
)


class _Stream:
    """Builds datagrams, remembering each domain's layouts so data sets match them."""

    def __init__(self) -> None:
        self.layout: dict[tuple[str, int, int, int], str] = {}
        self.seq: dict[tuple[str, int, int], int] = {}

    def build(self, spec: tuple[int, str, int, list[Any], str]) -> tuple[bytes, str]:
        version, addr, domain, sets, damage = spec
        ipfix = version == 10
        body: list[bytes] = []
        records = 0
        for kind, tid, arg in sets:
            if kind == "tpl":
                if arg == "var" and not ipfix:
                    arg = "alt"  # v9 has no variable-length fields
                self.layout[(addr, version, domain, tid)] = arg
                body.append(b.template_set(tid, LAYOUTS[arg][0], ipfix=ipfix))
            elif kind == "data":
                name = self.layout.get((addr, version, domain, tid), "v4")
                recs = [LAYOUTS[name][1](i) for i in range(arg)]
                body.append(b.data_set(tid, recs, pad=not ipfix))
                records += len(recs)
            elif kind == "opt_tpl":
                if ipfix:
                    opts = [(160, 8), (305, 4), (306, 4)]
                    body.append(b.options_template_set(tid, [(149, 4)], opts, ipfix=True))
                else:
                    body.append(b.options_template_set(tid, [(1, 4)], [(34, 4)], ipfix=False))
            elif kind == "opt_data":
                if ipfix:
                    init = b.EXPORT_SECS * 1000 - 3_600_000
                    rec = struct.pack("!IQII", 1, init, 1, arg - 1)
                else:
                    rec = struct.pack("!II", 0, arg)
                body.append(b.data_set(tid, [rec]))
            elif kind == "withdraw" and ipfix:
                body.append(b.withdrawal_set(tid))
            elif kind == "reserved":
                body.append(struct.pack("!HH", tid, 8) + b"\0" * 4)
        key = (addr, version, domain)
        seq = self.seq.get(key, 1000)
        if damage == "seq_jump":
            seq += 7
        self.seq[key] = seq + (records if ipfix else 1)
        if ipfix:
            data = b.ipfix(body, seq=seq, domain=domain)
        else:
            data = b.v9(body, seq=seq, source_id=domain)
        if damage == "truncate" and len(data) > 24:
            data = data[: len(data) - 3]
        elif damage == "junk":
            data = data[:20] + b"\xff" * 5
        return data, addr


def _run(decoder: Decoder, stream: list[tuple[bytes, str]], cuts: list[int]) -> list[str]:
    out: list[str] = []
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for lo, hi in itertools.pairwise(bounds):
        batch = decoder.decode(stream[lo:hi])
        out += [json.dumps(r, sort_keys=True) for r in batch.iter_dicts()]
    return sorted(out)


def _state(decoder: Decoder) -> dict[str, Any]:
    s = decoder.stats
    return {
        "datagrams": dict(s.datagrams),
        "records": dict(s.records),
        "errors": dict(s.errors),
        "misses": s.template_misses,
        "pending": (s.pending_decoded, s.pending_dropped, decoder.pending_sets()),
        "gaps": dict(s.sequence_gaps),
        "lost": dict(s.sequence_lost),
        "templates": {k: c.fields for k, c in decoder.cache.templates.items()},
        "domains": {k: (v.sampling, v.sys_init_ms) for k, v in decoder.cache.domains.items()},
    }


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(datagram_spec, min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=4),
    pending=st.sampled_from([2, 1024]),
)
def test_array_walk_decodes_what_the_per_datagram_walk_decodes(
    specs: list[Any], cuts: list[int], pending: int
) -> None:
    builder = _Stream()
    stream = [builder.build(s) for s in specs]
    reference = Decoder(batch_sets=False, pending_max_sets=pending)
    arrays = Decoder(pending_max_sets=pending)
    expected = _run(reference, stream, cuts)
    got = _run(arrays, stream, cuts)
    assert "internal" not in arrays.stats.errors
    assert got == expected
    assert _state(arrays) == _state(reference)


def test_repeated_templates_and_options_stay_on_the_array_path() -> None:
    """softflowd re-sends templates and options every 16 datagrams: those sets change
    nothing, so after the first datagram no datagram takes the per-datagram path."""
    opts = b.options_template_set(500, [(149, 4)], [(305, 4), (306, 4)], ipfix=True)
    odata = b.data_set(500, [struct.pack("!III", 1, 1, 9)])
    tpl = b.template_set(256, b.V4_FIELDS)
    stream = []
    seq = 0
    for i in range(64):
        sets = [tpl, opts, odata] if i % 16 == 0 else []
        sets.append(b.data_set(256, [b.v4_record(dport=i)] * 3, pad=False))
        stream.append((b.ipfix(sets, seq=seq), A))
        seq += 3
    dec = Decoder()
    handled: list[int] = []
    original = dec._one

    def spy(data: bytes, addr: str) -> None:
        handled.append(len(handled))
        original(data, addr)

    dec._one = spy  # type: ignore[method-assign]
    batch = dec.decode(stream)
    assert len(batch) == 64 * 3
    assert {r["sampling"] for r in batch.iter_dicts()} == {10}
    assert len(handled) == 1  # only the first datagram taught something
    assert dec.stats.sequence_gaps == {}


def test_options_and_templates_changing_mid_batch() -> None:
    """New sampling and a redefined template take effect exactly where they arrive."""
    stream = _Stream()
    specs: list[Any] = [
        (10, A, 0, [("tpl", 256, "v4"), ("opt_tpl", 500, ""), ("opt_data", 500, 10)], "ok"),
        (10, A, 0, [("data", 256, 2)], "ok"),
        (10, A, 0, [("opt_data", 500, 100), ("data", 256, 1)], "ok"),
        (10, A, 0, [("data", 256, 3)], "ok"),
        (10, A, 0, [("tpl", 256, "alt"), ("data", 256, 1)], "ok"),
        (10, A, 0, [("opt_data", 500, 100), ("data", 256, 2)], "ok"),
    ]
    datagrams = [stream.build(s) for s in specs]
    reference = Decoder(batch_sets=False)
    arrays = Decoder()
    assert _run(arrays, datagrams, []) == _run(reference, datagrams, [])
    assert _state(arrays) == _state(reference)
    got = [(r["sampling"], r["src_addr"]) for r in Decoder().decode(datagrams).iter_dicts()]
    first = [(10, "10.0.0.1"), (10, "10.0.0.2")]
    later = [(100, "10.0.0.1"), (100, "10.0.0.1"), (100, "10.0.0.2"), (100, "10.0.0.3")]
    redefined = [(100, "10.9.9.1"), (100, "10.9.9.1"), (100, "10.9.9.2")]
    assert sorted(got) == sorted([*first, *later, *redefined])


def test_walk_marks_malformed_datagrams_slow() -> None:
    good = b.ipfix([b.template_set(256, b.V4_FIELDS), b.data_set(256, [b.v4_record()])])
    w = walk(
        [
            good,
            good[:10],  # short header
            b.ipfix([struct.pack("!HH", 256, 900)]),  # set length past the end
            b"\x00\x05" + good[2:],  # not v9/IPFIX
            b.ipfix([struct.pack("!HH", 256, 4)] * 70),  # more sets than the walk follows
        ]
    )
    assert w.slow.tolist() == [False, True, True, True, True]
    assert w.set_dgram.tolist() == [0, 0]
    assert w.set_id.tolist() == [2, 256]
    assert w.set_start.tolist() == [20, 20 + len(b.template_set(256, b.V4_FIELDS))]
