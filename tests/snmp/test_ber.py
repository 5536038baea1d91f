"""The fast BER codec against pyasn1/pysnmp's own encoder and decoder, and against garbage."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.proto.api import v2c

from collector.snmp.ber import (
    END_OF_MIB_VIEW,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    BerError,
    decode_oid,
    decode_response,
    encode_oid,
    encode_request,
)
from collector.snmp.errors import SnmpTimeout
from collector.snmp.transport import FastV2cClient

VALUES = [
    ((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(4294967295), 4294967295),
    ((1, 3, 6, 1, 2, 1, 1, 5, 0), rfc1902.OctetString("晋城".encode()), "晋城".encode()),
    ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 300), rfc1902.Integer(-129), -129),
    ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 70000), rfc1902.Counter64(2**64 - 1), 2**64 - 1),
    ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15, 1), rfc1902.Gauge32(10000), 10000),
    (
        (1, 3, 6, 1, 2, 1, 4, 20, 1, 1, 10, 145, 200, 255),
        rfc1902.IpAddress("10.145.200.255"),
        bytes([10, 145, 200, 255]),
    ),
    (
        (1, 3, 6, 1, 2, 1, 1, 2, 0),
        rfc1902.ObjectIdentifier((1, 3, 6, 1, 4, 1, 2011, 2**32 - 1)),
        (1, 3, 6, 1, 4, 1, 2011, 2**32 - 1),
    ),
    ((1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1), rfc1902.Counter32(123456), 123456),
    ((1, 3, 6, 1, 2, 1, 9, 9), rfc1905.endOfMibView, END_OF_MIB_VIEW),
    ((1, 3, 6, 1, 2, 1, 9, 10), rfc1905.noSuchObject, NO_SUCH_OBJECT),
    ((1, 3, 6, 1, 2, 1, 9, 11), rfc1905.noSuchInstance, NO_SUCH_INSTANCE),
    ((2, 999, 3), v2c.null, None),
]


def pysnmp_response(request_id: int = 4711, community: bytes = b"public") -> bytes:
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_varbinds(pdu, [(oid, val) for oid, val, _ in VALUES])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(ber_encoder.encode(msg))


def test_decodes_what_pyasn1_encodes() -> None:
    resp = decode_response(pysnmp_response())
    assert resp.request_id == 4711
    assert resp.community == b"public"
    assert (resp.error_status, resp.error_index) == (0, 0)
    assert resp.varbinds == [(oid, want) for oid, _, want in VALUES]


def test_request_decodes_with_pyasn1() -> None:
    oids = [(1, 3, 6, 1, 2, 1, 4, 35, 1, 4, 7, 1, 4, 192, 168, 200, 1), (1, 3, 6, 1, 2, 1, 31)]
    raw = encode_request(b"c@vrf1", 2**31 - 2, oids, non_repeaters=1, max_repetitions=25)
    msg, rest = ber_decoder.decode(raw, asn1Spec=v2c.Message())
    assert rest == b""
    assert bytes(v2c.apiMessage.get_community(msg)) == b"c@vrf1"
    pdu = v2c.apiMessage.get_pdu(msg)
    assert isinstance(pdu, v2c.GetBulkRequestPDU)
    assert int(v2c.apiPDU.get_request_id(pdu)) == 2**31 - 2
    assert int(v2c.apiBulkPDU.get_non_repeaters(pdu)) == 1
    assert int(v2c.apiBulkPDU.get_max_repetitions(pdu)) == 25
    assert [tuple(o) for o, _ in v2c.apiPDU.get_varbinds(pdu)] == oids


@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
    st.integers(0, 2),
    st.integers(0, 39),
)
@settings(max_examples=300, deadline=None)
def test_oid_roundtrip(rest: list[int], first: int, second: int) -> None:
    oid = (first, second, *rest)
    body = encode_oid(oid)
    assert decode_oid(body, 0, len(body)) == oid
    assert (
        body
        == bytes(ber_encoder.encode(rfc1902.ObjectIdentifier(oid)))[2 if len(body) < 128 else 3 :]
    )


def test_every_truncation_is_a_clean_error() -> None:
    raw = pysnmp_response()
    for cut in range(len(raw)):
        with pytest.raises(BerError):
            decode_response(raw[:cut])


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_garbage_raises_only_ber_error(data: bytes) -> None:
    with contextlib.suppress(BerError):
        decode_response(data)


@given(st.binary(min_size=1, max_size=200), st.integers(0, 400))
@settings(max_examples=300, deadline=None)
def test_corrupted_response_raises_only_ber_error(noise: bytes, at: int) -> None:
    raw = bytearray(pysnmp_response())
    at %= len(raw)
    raw[at : at + len(noise)] = noise
    with contextlib.suppress(BerError):
        decode_response(bytes(raw))


def test_client_counts_and_drops_malformed_and_stray() -> None:
    asyncio.run(_malformed_and_stray())


async def _malformed_and_stray() -> None:
    """A peer that first sends garbage and an answer to another request id, then the real
    answer: the client drops both, counts them, and returns the real one."""
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []

    class Peer(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            rid = ber_decoder.decode(data, asn1Spec=v2c.Message())[0]
            req_id = int(v2c.apiPDU.get_request_id(v2c.apiMessage.get_pdu(rid)))
            for out in (b"\x30\x84garbage", pysnmp_response(req_id + 1), pysnmp_response(req_id)):
                self.t.sendto(out, addr)  # type: ignore[attr-defined]
                replies.append(out)

    transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        async with FastV2cClient("127.0.0.1", port, "public", timeout=1, retries=0) as client:
            vbs = await client.get_bulk([(1, 3, 6, 1)], 0, 10)
            await asyncio.sleep(0.05)
            assert vbs == [(oid, want) for oid, _, want in VALUES]
            assert client.stats.malformed == 1
            assert client.stats.stray == 1
            assert client.stats.responses == 1
    finally:
        transport.close()


def test_client_times_out_on_wrong_community_peer() -> None:
    asyncio.run(_wrong_community())


async def _wrong_community() -> None:
    """Answers with another community are not ours: dropped, then a timeout."""
    loop = asyncio.get_running_loop()

    class Peer(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            msg = ber_decoder.decode(data, asn1Spec=v2c.Message())[0]
            rid = int(v2c.apiPDU.get_request_id(v2c.apiMessage.get_pdu(msg)))
            self.t.sendto(pysnmp_response(rid, b"other"), addr)  # type: ignore[attr-defined]

    transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        async with FastV2cClient("127.0.0.1", port, "public", timeout=0.2, retries=1) as client:
            with pytest.raises(SnmpTimeout):
                await client.get_bulk([(1, 3, 6, 1)], 0, 10)
            assert client.stats.stray == 2
            assert client.stats.requests == 2
    finally:
        transport.close()
