"""A small BER codec for exactly what the v2c hot path needs: GetBulkRequest out, Response in.

Why not pyasn1: pysnmp spends ~180–200 µs of CPU per varbind on this machine, ~60 % of it in
pyasn1's generic BER decoder (../shared/LAB.md, "pysnmp 7"); a sweep of 50 edge routers with
3,000 ARP rows and 400 sub-interfaces each is ~500k varbinds, i.e. ~90 s of CPU for decoding
alone. SNMPv2c responses use a handful of universal and application tags with definite
lengths, so a straight-line decoder over ``bytes`` does the same work in a few µs per varbind
(bench/snmp_sweep.py measures both). Anything it does not understand raises
:class:`BerError`; the caller counts and drops that datagram. SNMPv3 (USM security) stays
with pysnmp (collector/snmp/v3.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

Oid = tuple[int, ...]


class BerError(ValueError):
    """A datagram that is not a well-formed SNMPv2c response."""


class SnmpExceptionValue:
    """noSuchObject / noSuchInstance / endOfMibView (RFC 3416 varbind exceptions)."""

    __slots__ = ("name", "tag")

    def __init__(self, name: str, tag: int) -> None:
        self.name = name
        self.tag = tag

    def __repr__(self) -> str:
        return self.name


NO_SUCH_OBJECT: Final = SnmpExceptionValue("noSuchObject", 0x80)
NO_SUCH_INSTANCE: Final = SnmpExceptionValue("noSuchInstance", 0x81)
END_OF_MIB_VIEW: Final = SnmpExceptionValue("endOfMibView", 0x82)
_EXCEPTIONS: Final = {0x80: NO_SUCH_OBJECT, 0x81: NO_SUCH_INSTANCE, 0x82: END_OF_MIB_VIEW}

# value: int (INTEGER, Counter32/64, Gauge32, TimeTicks), bytes (OCTET STRING, IpAddress,
# Opaque), Oid (OBJECT IDENTIFIER), None (NULL) or one of the exception singletons.
Value = int | bytes | Oid | None | SnmpExceptionValue
VarBind = tuple[Oid, Value]

_UNSIGNED_TAGS: Final = frozenset({0x41, 0x42, 0x43, 0x46, 0x47})  # Counter32 Gauge32 TimeTicks
# Counter64 UInteger32
_BYTES_TAGS: Final = frozenset({0x04, 0x40, 0x44})  # OCTET STRING, IpAddress, Opaque

PDU_GET: Final = 0xA0
PDU_RESPONSE: Final = 0xA2
PDU_GETBULK: Final = 0xA5
PDU_REPORT: Final = 0xA8
VERSION_V2C: Final = 1


@dataclass(slots=True)
class Response:
    """A decoded Response-PDU (errors as RFC 3416 numbers; 1 = tooBig)."""

    version: int
    community: bytes
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[VarBind]


# --- encoding (requests only: a few per device, not per varbind) ------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _len(len(body)) + body


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def encode_oid(oid: Oid) -> bytes:
    """BER content octets of an OBJECT IDENTIFIER (no tag/length)."""
    if len(oid) < 2:
        raise BerError(f"an OID needs at least two sub-identifiers: {oid}")
    out = bytearray()
    for sub in (oid[0] * 40 + oid[1], *oid[2:]):
        if sub < 0:
            raise BerError(f"negative sub-identifier in {oid}")
        if sub < 0x80:
            out.append(sub)
            continue
        chunk = [sub & 0x7F]
        sub >>= 7
        while sub:
            chunk.append(0x80 | (sub & 0x7F))
            sub >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def encode_request(
    community: bytes,
    request_id: int,
    oids: list[Oid],
    *,
    pdu_type: int = PDU_GETBULK,
    non_repeaters: int = 0,
    max_repetitions: int = 0,
) -> bytes:
    """An SNMPv2c GetBulkRequest (or GetRequest) message with NULL values."""
    vbs = b"".join(_tlv(0x30, _tlv(0x06, encode_oid(o)) + b"\x05\x00") for o in oids)
    pdu = _tlv(
        pdu_type,
        _int(request_id) + _int(non_repeaters) + _int(max_repetitions) + _tlv(0x30, vbs),
    )
    return _tlv(0x30, _int(VERSION_V2C) + _tlv(0x04, community) + pdu)


# --- decoding (the hot path) -----------------------------------------------------------------


def decode_oid(data: bytes, start: int, end: int) -> Oid:
    """Sub-identifiers of the OID content octets ``data[start:end]``."""
    if start >= end:
        raise BerError("empty OBJECT IDENTIFIER")
    first = data[start]
    if first < 0x80:
        head: Oid = (first // 40, first % 40) if first < 80 else (2, first - 80)
        raw = data[start + 1 : end]
        if raw.isascii():  # every sub-identifier fits in one octet: no decoding loop
            return head + tuple(raw)
        out = list(head)
        pos = start + 1
    else:
        out = []
        pos = start
    acc = 0
    for b in data[pos:end]:
        if b & 0x80:
            acc = (acc << 7) | (b & 0x7F)
        else:
            out.append((acc << 7) | b)
            acc = 0
    if acc or data[end - 1] & 0x80:
        raise BerError("truncated OBJECT IDENTIFIER")
    if first >= 0x80:  # the first sub-identifier pair took several octets
        val = out[0]
        out[0:1] = [2, val - 80] if val >= 80 else [val // 40, val % 40]
    return tuple(out)


def _read_len(data: bytes, pos: int) -> tuple[int, int]:
    """(length, position after the length octets)."""
    try:
        b = data[pos]
    except IndexError:
        raise BerError("truncated length") from None
    if b < 0x80:
        return b, pos + 1
    n = b & 0x7F
    if n == 0 or n > 4:
        raise BerError(f"unsupported length form 0x{b:02x}")
    end = pos + 1 + n
    if end > len(data):
        raise BerError("truncated length")
    return int.from_bytes(data[pos + 1 : end], "big"), end


def _expect(data: bytes, pos: int, tag: int, what: str) -> tuple[int, int]:
    """(content start, content end) of the TLV at ``pos`` that must carry ``tag``."""
    if pos >= len(data) or data[pos] != tag:
        got = f"0x{data[pos]:02x}" if pos < len(data) else "end of data"
        raise BerError(f"expected {what} (0x{tag:02x}), got {got}")
    length, start = _read_len(data, pos + 1)
    end = start + length
    if end > len(data):
        raise BerError(f"{what} runs past the end of the datagram")
    return start, end


def _read_int(data: bytes, pos: int, what: str) -> tuple[int, int]:
    start, end = _expect(data, pos, 0x02, what)
    return int.from_bytes(data[start:end], "big", signed=True), end


def decode_header(data: bytes) -> tuple[int, bytes, int, int]:
    """(version, community, pdu type, request id) without decoding the varbinds."""
    _, end = _expect(data, 0, 0x30, "message SEQUENCE")
    version, pos = _read_int(data, 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F), "version")
    cstart, cend = _expect(data, pos, 0x04, "community")
    pos = cend
    if pos >= end:
        raise BerError("no PDU")
    pdu_type = data[pos]
    _, pstart = _read_len(data, pos + 1)
    request_id, _ = _read_int(data, pstart, "request-id")
    return version, data[cstart:cend], pdu_type, request_id


def decode_response(data: bytes) -> Response:
    """Decode an SNMPv2c Response-PDU; raises :class:`BerError` on anything malformed."""
    mstart, mend = _expect(data, 0, 0x30, "message SEQUENCE")
    version, pos = _read_int(data, mstart, "version")
    cstart, cend = _expect(data, pos, 0x04, "community")
    pos = cend
    if pos >= mend:
        raise BerError("no PDU")
    pdu_type = data[pos]
    if pdu_type != PDU_RESPONSE:
        raise BerError(f"PDU type 0x{pdu_type:02x} is not a Response")
    plen, pos = _read_len(data, pos + 1)
    if pos + plen > mend:
        raise BerError("PDU runs past the end of the message")
    request_id, pos = _read_int(data, pos, "request-id")
    error_status, pos = _read_int(data, pos, "error-status")
    error_index, pos = _read_int(data, pos, "error-index")
    lstart, lend = _expect(data, pos, 0x30, "varbind list")
    return Response(
        version,
        data[cstart:cend],
        request_id,
        error_status,
        error_index,
        _decode_varbinds(data, lstart, lend),
    )


def _decode_varbinds(data: bytes, pos: int, end: int) -> list[VarBind]:
    out: list[VarBind] = []
    append = out.append
    exceptions = _EXCEPTIONS
    unsigned = _UNSIGNED_TAGS
    as_bytes = _BYTES_TAGS
    from_bytes = int.from_bytes
    try:
        while pos < end:
            # VarBind SEQUENCE
            if data[pos] != 0x30:
                raise BerError(f"expected VarBind SEQUENCE, got 0x{data[pos]:02x}")
            b = data[pos + 1]
            if b < 0x80:
                vb_end = pos + 2 + b
                pos += 2
            else:
                vlen, pos = _read_len(data, pos + 1)
                vb_end = pos + vlen
            if vb_end > end:
                raise BerError("VarBind runs past the varbind list")
            # name
            if data[pos] != 0x06:
                raise BerError(f"expected OID in VarBind, got 0x{data[pos]:02x}")
            b = data[pos + 1]
            if b < 0x80:
                ostart = pos + 2
                oend = ostart + b
            else:
                olen, ostart = _read_len(data, pos + 1)
                oend = ostart + olen
            oid = decode_oid(data, ostart, oend)
            # value
            tag = data[oend]
            b = data[oend + 1]
            if b < 0x80:
                vstart = oend + 2
                vend = vstart + b
            else:
                vlen, vstart = _read_len(data, oend + 1)
                vend = vstart + vlen
            if vend != vb_end:
                raise BerError("VarBind length does not match its contents")
            value: Value
            if tag == 0x02:
                value = from_bytes(data[vstart:vend], "big", signed=True)
            elif tag in as_bytes:
                value = data[vstart:vend]
            elif tag in unsigned:
                value = from_bytes(data[vstart:vend], "big")
            elif tag == 0x06:
                value = decode_oid(data, vstart, vend)
            elif tag == 0x05:
                value = None
            elif tag in exceptions:
                value = exceptions[tag]
            else:
                raise BerError(f"unsupported value tag 0x{tag:02x}")
            append((oid, value))
            pos = vb_end
    except IndexError:
        raise BerError("truncated VarBind") from None
    return out
