"""GETBULK through pysnmp 7's asyncio API, for SNMPv3 (USM discovery, authentication,
privacy) and as the reference the fast v2c codec is checked against.

It has the same ``get_bulk`` shape as :class:`collector.snmp.transport.FastV2cClient`, so the
walker does not care which one it drives. pysnmp's error indications become our errors:
timeouts → :class:`SnmpTimeout`, USM refusals → :class:`SnmpAuthError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    usm3DESEDEPrivProtocol,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
)
from pysnmp.proto import errind, rfc1905

from collector.snmp.ber import (
    END_OF_MIB_VIEW,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    Oid,
    Value,
    VarBind,
)
from collector.snmp.errors import SnmpAgentError, SnmpAuthError, SnmpError, SnmpTimeout

AUTH_PROTOCOLS: dict[str, Any] = {
    "md5": usmHMACMD5AuthProtocol,
    "sha": usmHMACSHAAuthProtocol,
    "sha1": usmHMACSHAAuthProtocol,
    "sha224": usmHMAC128SHA224AuthProtocol,
    "sha256": usmHMAC192SHA256AuthProtocol,
    "sha384": usmHMAC256SHA384AuthProtocol,
    "sha512": usmHMAC384SHA512AuthProtocol,
}
PRIV_PROTOCOLS: dict[str, Any] = {
    "des": usmDESPrivProtocol,
    "3des": usm3DESEDEPrivProtocol,
    "aes": usmAesCfb128Protocol,
    "aes128": usmAesCfb128Protocol,
    "aes192": usmAesCfb192Protocol,
    "aes256": usmAesCfb256Protocol,
}

_AUTH_ERRORS = (
    errind.WrongDigest,
    errind.UnknownUserName,
    errind.UnknownSecurityName,
    errind.UnsupportedSecurityLevel,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
    errind.DecryptionError,
    errind.NotInTimeWindow,
)


@dataclass(frozen=True)
class V3Credentials:
    """SNMPv3 USM user; keys in clear only in memory (never logged, never repr'd)."""

    user: str
    auth_protocol: str | None
    auth_key: str | None
    priv_protocol: str | None
    priv_key: str | None

    def __repr__(self) -> str:
        return f"V3Credentials(user={self.user!r}, <keys redacted>)"

    def usm(self) -> UsmUserData:
        auth = _protocol(AUTH_PROTOCOLS, self.auth_protocol, "auth") if self.auth_key else None
        priv = _protocol(PRIV_PROTOCOLS, self.priv_protocol, "priv") if self.priv_key else None
        return UsmUserData(
            self.user,
            authKey=self.auth_key,
            privKey=self.priv_key,
            authProtocol=auth,
            privProtocol=priv,
        )


def _protocol(table: dict[str, Any], name: str | None, what: str) -> Any:
    key = (name or ("sha" if what == "auth" else "aes")).lower().replace("-", "")
    if key not in table:
        raise SnmpError(f"unsupported SNMPv3 {what} protocol {name!r}: use one of {sorted(table)}")
    return table[key]


def _value(val: Any) -> Value:
    if isinstance(val, rfc1905.EndOfMibView):
        return END_OF_MIB_VIEW
    if isinstance(val, rfc1905.NoSuchObject):
        return NO_SUCH_OBJECT
    if isinstance(val, rfc1905.NoSuchInstance):
        return NO_SUCH_INSTANCE
    if isinstance(val, univ.ObjectIdentifier):
        return tuple(val)
    if isinstance(val, univ.OctetString):  # also IpAddress, Opaque
        return bytes(val.asOctets())
    if isinstance(val, univ.Null):
        return None
    return int(val)


class PysnmpClient:
    """GETBULK via ``pysnmp.hlapi.v3arch.asyncio.bulk_cmd`` (v3 USM or v2c)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        community: str | None = None,
        v3: V3Credentials | None = None,
        context: str = "",
        timeout: float,
        retries: int,
    ) -> None:
        if (community is None) == (v3 is None):
            raise ValueError("give a community (v2c) or v3 credentials, not both")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self._auth: CommunityData | UsmUserData = (
            v3.usm() if v3 is not None else CommunityData(community, mpModel=1)
        )
        self._context = ContextData(contextName=context)
        self._engine: SnmpEngine | None = None
        self._target: UdpTransportTarget | None = None

    def __repr__(self) -> str:
        return f"PysnmpClient({self.host}:{self.port})"

    async def open(self) -> None:
        self._engine = SnmpEngine()
        self._target = await UdpTransportTarget.create(
            (self.host, self.port), timeout=self.timeout, retries=self.retries
        )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None

    async def __aenter__(self) -> PysnmpClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def get_bulk(
        self, oids: Sequence[Oid], non_repeaters: int = 0, max_repetitions: int = 25
    ) -> list[VarBind]:
        if self._engine is None or self._target is None:
            raise SnmpError("client is not open")
        err_ind, err_status, err_index, vbs = await bulk_cmd(
            self._engine,
            self._auth,
            self._target,
            self._context,
            non_repeaters,
            max_repetitions,
            *(ObjectType(ObjectIdentity(".".join(map(str, o)))) for o in oids),
            lookupMib=False,
        )
        if err_ind:
            if isinstance(err_ind, errind.RequestTimedOut):
                raise SnmpTimeout(
                    f"no response from {self.host}:{self.port} after {self.retries + 1} "
                    f"tries of {self.timeout:g} s"
                )
            if isinstance(err_ind, _AUTH_ERRORS):
                raise SnmpAuthError(f"SNMPv3 credentials refused: {err_ind}")
            raise SnmpError(f"SNMP engine error: {err_ind}")
        if int(err_status):
            raise SnmpAgentError(int(err_status), int(err_index))
        out: list[VarBind] = []
        for name, val in vbs:
            oid = name.getOid() if isinstance(name, ObjectIdentity) else name
            out.append((tuple(oid), _value(val)))
        return out
