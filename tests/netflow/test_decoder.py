"""Targeted decoder behaviour: times, templates, sampling, malformed input, fuzzing."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import builders as b
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.netflow.decoder import Decoder
from collector.netflow.templates import TemplateCache

A = "192.0.2.1"
B = "192.0.2.2"
EXPORT_MS = b.EXPORT_SECS * 1000


def recs(decoder: Decoder, *datagrams: bytes, addr: str = A) -> list[dict]:
    return list(decoder.decode([(d, addr) for d in datagrams]).iter_dicts())


def test_v5_fields_and_uptime_wrap() -> None:
    # sysUptime wrapped 1 s ago; the flow started 5 s before the wrap.
    wrapped = b.v5(
        [{"first": 2**32 - 5000, "last": 500, "packets": 4, "octets": 400}],
        uptime=1000,
        nsecs=250_000_000,
    )
    (r,) = recs(Decoder(), wrapped)
    assert r["first_ms"] == EXPORT_MS + 250 - 6000
    assert r["last_ms"] == EXPORT_MS + 250 - 500
    assert (r["src_addr"], r["dst_addr"], r["dst_port"], r["protocol"]) == (
        "10.0.0.1",
        "8.8.8.8",
        443,
        6,
    )
    assert (r["packets"], r["octets"], r["input_if"], r["output_if"]) == (4, 400, 1, 2)


def test_v5_header_sampling_applied() -> None:
    (r,) = recs(Decoder(), b.v5([{"packets": 2, "octets": 80}], sampling=(1 << 14) | 100))
    assert (r["packets"], r["octets"], r["sampling"]) == (200, 8000, 100)


def test_configured_sampling_when_exporter_announces_none() -> None:
    dec = Decoder(default_sampling={A: 10})
    (r,) = recs(dec, b.v5([{"packets": 2}]))
    assert (r["packets"], r["sampling"]) == (20, 10)


def test_v9_uptime_and_ipv6() -> None:
    fields = [(27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (22, 4), (21, 4)]
    rec = (
        socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        + socket.inet_pton(socket.AF_INET6, "2001:db8:1::2")
        + struct.pack("!HHBIIII", 5000, 1194, 17, 2, 200, 90_000, 95_000)
    )
    d = b.v9(
        [b.template_set(300, fields, ipfix=False), b.data_set(300, [rec], pad=False)],
        uptime=100_000,
    )
    (r,) = recs(Decoder(), d)
    assert (r["src_addr"], r["dst_addr"], r["protocol"]) == ("2001:db8::1", "2001:db8:1::2", 17)
    assert (r["first_ms"], r["last_ms"]) == (EXPORT_MS - 10_000, EXPORT_MS - 5_000)


def test_ipfix_variable_length_and_enterprise_fields_skipped() -> None:
    fields = [
        (8, 4),
        (82, 0xFFFF),
        (100, 4, 9),
        (12, 4),
        (2, 4),
        (1, 4),
        (150, 4),
        (151, 4),
        (200, 0xFFFF, 9),
    ]

    def rec(name: bytes, dst: str) -> bytes:
        var = (
            bytes([len(name)]) + name
            if len(name) < 255
            else b"\xff" + struct.pack("!H", len(name)) + name
        )
        return (
            socket.inet_aton("10.1.1.1")
            + var
            + b"ENTP"
            + socket.inet_aton(dst)
            + struct.pack("!IIII", 5, 500, b.EXPORT_SECS - 9, b.EXPORT_SECS - 1)
            + b"\x02xy"
        )

    d = b.ipfix(
        [
            b.template_set(400, fields),
            b.data_set(400, [rec(b"eth0", "8.8.4.4"), rec(b"x" * 300, "1.1.1.1")]),
        ]
    )
    dec = Decoder()
    out = recs(dec, d)
    assert [(r["src_addr"], r["dst_addr"], r["packets"], r["octets"]) for r in out] == [
        ("10.1.1.1", "8.8.4.4", 5, 500),
        ("10.1.1.1", "1.1.1.1", 5, 500),
    ]
    assert out[0]["first_ms"] == EXPORT_MS - 9000 and out[0]["last_ms"] == EXPORT_MS - 1000
    assert dec.stats.error_total() == 0


def test_ipfix_sysinit_sampling_options_and_delta_times() -> None:
    opts = b.options_template_set(500, [(149, 4)], [(160, 8), (305, 4), (306, 4)], ipfix=True)
    odata = b.data_set(500, [struct.pack("!IQII", 1, EXPORT_MS - 3_600_000, 1, 99)])
    fields = [(8, 4), (12, 4), (2, 4), (1, 4), (22, 4), (21, 4)]
    rec = (
        socket.inet_aton("10.0.0.1")
        + socket.inet_aton("9.9.9.9")
        + struct.pack("!IIII", 1, 60, 1000, 2000)
    )
    d = b.ipfix([opts, odata, b.template_set(501, fields), b.data_set(501, [rec])])
    (r,) = recs(Decoder(), d)
    assert (r["packets"], r["octets"], r["sampling"]) == (100, 6000, 100)
    assert (r["first_ms"], r["last_ms"]) == (EXPORT_MS - 3_599_000, EXPORT_MS - 3_598_000)

    fields2 = [(8, 4), (12, 4), (158, 4), (159, 4)]
    rec2 = (
        socket.inet_aton("10.0.0.1")
        + socket.inet_aton("9.9.9.9")
        + struct.pack("!II", 7_000_000, 2_000_000)
    )
    (r2,) = recs(Decoder(), b.ipfix([b.template_set(502, fields2), b.data_set(502, [rec2])]))
    assert (r2["first_ms"], r2["last_ms"]) == (EXPORT_MS - 7000, EXPORT_MS - 2000)


def test_v9_options_sampling_interval() -> None:
    opts = b.options_template_set(260, [(1, 4)], [(34, 4), (35, 1)], ipfix=False)
    odata = b.data_set(260, [struct.pack("!IIB", 0, 64, 2)])
    fields = [(8, 4), (12, 4), (2, 4), (1, 4)]
    rec = socket.inet_aton("10.0.0.1") + socket.inet_aton("9.9.9.9") + struct.pack("!II", 1, 60)
    d = b.v9([opts, odata, b.template_set(261, fields, ipfix=False), b.data_set(261, [rec])])
    (r,) = recs(Decoder(), d)
    assert (r["packets"], r["octets"], r["sampling"]) == (64, 3840, 64)


def test_template_id_collision_between_exporters() -> None:
    dec = Decoder()
    tpl_a = b.template_set(256, b.V4_FIELDS)
    tpl_b = b.template_set(256, [(12, 4), (8, 4), (2, 4), (1, 4)])  # same ID, other layout
    rec_b = socket.inet_aton("8.8.8.8") + socket.inet_aton("10.9.9.9") + struct.pack("!II", 1, 2)
    batch = dec.decode(
        [
            (b.ipfix([tpl_a]), A),
            (b.ipfix([tpl_b]), B),
            (b.ipfix([b.data_set(256, [b.v4_record(src="10.0.0.5")])]), A),
            (b.ipfix([b.data_set(256, [rec_b])]), B),
        ]
    )
    got = {(r["exporter"], r["src_addr"], r["dst_addr"]) for r in batch.iter_dicts()}
    assert got == {(A, "10.0.0.5", "8.8.8.8"), (B, "10.9.9.9", "8.8.8.8")}


def test_data_before_template_is_held_then_decoded() -> None:
    dec = Decoder()
    early = b.ipfix([b.data_set(256, [b.v4_record(dport=3389)])])
    assert recs(dec, early) == []
    assert dec.stats.template_misses == 1 and dec.pending_sets() == 1
    out = recs(dec, b.ipfix([b.template_set(256, b.V4_FIELDS)]))
    assert [r["dst_port"] for r in out] == [3389]
    assert dec.pending_sets() == 0


def test_pending_buffer_is_bounded() -> None:
    dec = Decoder(pending_max_sets=2)
    for port in range(5):
        recs(dec, b.ipfix([b.data_set(256, [b.v4_record(dport=port)])]))
    assert dec.pending_sets() == 2 and dec.stats.pending_dropped == 3
    out = recs(dec, b.ipfix([b.template_set(256, b.V4_FIELDS)]))
    assert [r["dst_port"] for r in out] == [3, 4]  # the newest ones were kept


def test_template_withdrawal() -> None:
    dec = Decoder()
    data = b.ipfix([b.data_set(256, [b.v4_record()])])
    assert len(recs(dec, b.ipfix([b.template_set(256, b.V4_FIELDS)]), data)) == 1
    assert recs(dec, b.ipfix([b.withdrawal_set(256)]), data) == []
    assert dec.stats.template_misses == 1
    recs(dec, b.ipfix([b.template_set(256, b.V4_FIELDS), b.withdrawal_set(2)]), data)
    assert dec.stats.template_misses == 2  # "withdraw all data templates"


def test_templates_survive_restart(tmp_path: Path) -> None:
    dec = Decoder()
    opts = b.options_template_set(500, [(149, 4)], [(305, 4), (306, 4)], ipfix=True)
    recs(
        dec,
        b.ipfix(
            [
                b.template_set(256, b.V4_FIELDS),
                opts,
                b.data_set(500, [struct.pack("!III", 1, 1, 9)]),
            ]
        ),
    )
    assert dec.cache.dirty
    dec.cache.save(tmp_path / "templates.json")
    again = Decoder(TemplateCache.load(tmp_path / "templates.json"))
    (r,) = recs(again, b.ipfix([b.data_set(256, [b.v4_record(packets=2)])]))
    assert (r["packets"], r["sampling"]) == (20, 10)
    assert again.stats.template_misses == 0


def test_sequence_gaps_counted_per_exporter() -> None:
    dec = Decoder()
    tpl = b.template_set(256, b.V4_FIELDS, ipfix=False)
    for seq in (1, 2, 5, 6):
        recs(dec, b.v9([tpl], seq=seq))
    recs(dec, b.v9([tpl], seq=1), addr=B)
    assert dec.stats.sequence_gaps == {(A, 0): 1}
    assert dec.stats.sequence_lost == {(A, 0): 2}
    dec2 = Decoder()
    recs(dec2, b.v5([{}] * 3, seq=10), b.v5([{}] * 2, seq=13), b.v5([{}], seq=20))
    assert dec2.stats.sequence_lost == {(A, 0): 5}


GOOD_V9 = b.v9(
    [
        b.template_set(256, b.V4_FIELDS, ipfix=False),
        b.data_set(256, [b.v4_record(dport=22), b.v4_record(dport=23)]),
    ],
    seq=1,
)


def _bad_datagrams() -> dict[str, bytes]:
    tpl = b.template_set(256, b.V4_FIELDS)
    return {
        "short_header": b"\x00\x09\x00",
        "short_header_v9": GOOD_V9[:12],
        "bad_version": b"\x00\x07" + b"\0" * 40,
        "ipfix_length_past_end": b.ipfix([tpl], length=4000),
        "ipfix_length_too_small": b.ipfix([tpl], length=8),
        "set_length_past_end": b.ipfix([struct.pack("!HH", 256, 900) + b"\0" * 20]),
        "set_length_zero": b.ipfix([struct.pack("!HH", 256, 0) + b"\0" * 20]),
        "zero_length_template": b.ipfix([b.template_set(300, [(8, 0), (12, 0)])]),
        "zero_field_count_v9": b.v9([struct.pack("!HHHH", 0, 8, 300, 0)]),
        "template_id_below_256": b.ipfix([b.template_set(7, b.V4_FIELDS)]),
        "template_truncated": b.ipfix([struct.pack("!HHHH", 2, 12, 300, 40) + b"\0" * 4]),
        "address_of_wrong_length": b.ipfix([b.template_set(301, [(8, 7), (12, 4)])]),
        "v5_absurd_count": b.v5([{}], count=5000),
        "v5_count_past_end": b.v5([{}], count=20),
        "options_scope_zero": b.ipfix([struct.pack("!HHHHHHH", 3, 14, 302, 1, 0, 8, 4)]),
        "reserved_set": b.ipfix([struct.pack("!HH", 100, 8) + b"\0" * 4]),
    }


def test_malformed_datagrams_counted_and_dropped_valid_ones_decoded() -> None:
    dec = Decoder()
    bad = _bad_datagrams()
    stream = []
    for payload in bad.values():
        stream += [(payload, B), (GOOD_V9, A)]
    batch = dec.decode(stream)
    assert len(batch) == 2 * len(bad)
    assert {r["dst_port"] for r in batch.iter_dicts()} == {22, 23}
    kinds = dec.stats.errors
    assert "internal" not in kinds
    for kind in (
        "short_header",
        "bad_version",
        "truncated",
        "bad_length",
        "set_length",
        "template_zero_length",
        "template_id",
        "template_truncated",
        "template_field_length",
        "v5_count",
        "template_scope",
        "reserved_set_id",
    ):
        assert kinds[kind] >= 1, kind
    assert dec.stats.error_total() >= len(bad)


def _mutations(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf[: max(0, len(buf) - cut)])


VALID = [
    GOOD_V9,
    b.ipfix([b.template_set(256, b.V4_FIELDS), b.data_set(256, [b.v4_record()] * 3)]),
    b.v5([{}] * 4),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.tuples(
                st.sampled_from(VALID),
                st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
                st.integers(0, 60),
            ).map(lambda t: _mutations(*t)),
        ),
        max_size=12,
    )
)
def test_fuzz_no_exception_and_valid_datagrams_still_decode(junk: list[bytes]) -> None:
    dec = Decoder()
    stream: list[tuple[bytes, str]] = []
    for i, j in enumerate(junk):
        stream.append((j, f"198.51.100.{i % 3 + 1}"))  # junk from other exporters
        stream.append((VALID[i % 3], A))
    stream += [(v, A) for v in VALID]
    batch = dec.decode(stream)
    assert "internal" not in dec.stats.errors
    from_a = [r for r in batch.iter_dicts() if r["exporter"] == A]
    valid_count = sum((2, 3, 4)[i % 3] for i in range(len(junk))) + 9
    assert len(from_a) == valid_count
