"""The SNMPv2c GETBULK client of the hot path: our BER codec over an asyncio DatagramProtocol.

pysnmp's v3arch engine costs ~180–200 µs of CPU per varbind here (60 % pyasn1 decoding, the
rest its message-processing layers); this client decodes with :mod:`collector.snmp.ber` and
does only what a v2c manager must: one connected UDP socket per device, request-id matching
(answers to an earlier try of the same request are accepted, stray or late ones are counted
and dropped), a timeout per try and a fixed number of retries. Malformed datagrams are
counted and dropped, never raised."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass

from collector.snmp.ber import (
    PDU_GETBULK,
    BerError,
    Oid,
    Response,
    VarBind,
    decode_response,
    encode_request,
)
from collector.snmp.errors import SnmpAgentError, SnmpError, SnmpTimeout


@dataclass
class ClientStats:
    """What a client did; ``malformed`` and ``stray`` datagrams were dropped."""

    requests: int = 0
    retries: int = 0
    responses: int = 0
    malformed: int = 0
    stray: int = 0
    bytes_in: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: FastV2cClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._client._received(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        self._client.last_error = exc


class FastV2cClient:
    """GETBULK over SNMPv2c with request-id matching, retries and a timeout per try."""

    def __init__(
        self,
        host: str,
        port: int,
        community: str | bytes,
        *,
        timeout: float,
        retries: int,
    ) -> None:
        self.host = host
        self.port = port
        self._community = community.encode() if isinstance(community, str) else community
        self.timeout = timeout
        self.retries = retries
        self.stats = ClientStats()
        self.last_error: Exception | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._next_id = random.randrange(1, 1 << 30)

    def __repr__(self) -> str:  # never show the community
        return f"FastV2cClient({self.host}:{self.port})"

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), remote_addr=(self.host, self.port)
        )
        self._transport = transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    async def __aenter__(self) -> FastV2cClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _received(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        try:
            resp = decode_response(data)
        except BerError:
            self.stats.malformed += 1
            return
        fut = self._pending.get(resp.request_id)
        if fut is None or fut.done() or resp.community != self._community:
            self.stats.stray += 1
            return
        fut.set_result(resp)

    async def get_bulk(
        self, oids: Sequence[Oid], non_repeaters: int = 0, max_repetitions: int = 25
    ) -> list[VarBind]:
        """The response's varbinds in wire order; raises SnmpTimeout or SnmpAgentError."""
        if self._transport is None:
            raise SnmpError("client is not open")
        rid = self._next_id
        self._next_id = rid + 1 if rid < (1 << 31) - 2 else 1
        msg = encode_request(
            self._community,
            rid,
            list(oids),
            pdu_type=PDU_GETBULK,
            non_repeaters=non_repeaters,
            max_repetitions=max_repetitions,
        )
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retries += 1
                self.stats.requests += 1
                self._transport.sendto(msg)
                done, _ = await asyncio.wait((fut,), timeout=self.timeout)
                if done:
                    break
            else:
                why = f" ({self.last_error})" if self.last_error else ""
                raise SnmpTimeout(
                    f"no response from {self.host}:{self.port} after {self.retries + 1} "
                    f"tries of {self.timeout:g} s{why}"
                )
        finally:
            self._pending.pop(rid, None)
        resp = fut.result()
        self.stats.responses += 1
        if resp.error_status:
            raise SnmpAgentError(resp.error_status, resp.error_index)
        return resp.varbinds
