"""Poll one device: system scalars, interfaces, ARP and routes, with the table fallbacks, the
optional VRF contexts, a deadline, and a clear status.

Status: ``timeout`` / ``auth_error`` / ``error`` when the device did not give even its
sysUpTime and sysName; ``partial`` when it did but a walk stopped (timeout mid-walk, loop,
out-of-order OIDs, the device deadline); ``ok`` otherwise. Whatever arrived before a failure
is kept and parsed, and each table says whether it is complete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from collector.snmp import oids, tables
from collector.snmp.ber import Oid, VarBind
from collector.snmp.errors import SnmpAuthError, SnmpError, SnmpTimeout
from collector.snmp.tables import ArpRow, IfRow, RouteRow
from collector.snmp.transport import FastV2cClient
from collector.snmp.v3 import PysnmpClient, V3Credentials
from collector.snmp.walker import Walk, new_walk, walk_columns
from core.models import SweepDeviceStatus
from core.settings import Settings
from core.timeutil import utcnow


class _Client(Protocol):
    async def open(self) -> None: ...
    def close(self) -> None: ...
    async def get_bulk(
        self, oids: Sequence[Oid], non_repeaters: int = 0, max_repetitions: int = 25
    ) -> list[VarBind]: ...


@dataclass(frozen=True)
class DeviceTarget:
    """What to poll and how; credentials are clear text in memory only (never repr'd)."""

    name: str
    host: str
    port: int
    community: str | None = None
    v3: V3Credentials | None = None
    contexts: tuple[str, ...] = ()
    # force pysnmp for v2c too (the reference path; the benchmark compares both)
    use_pysnmp: bool = False

    def __repr__(self) -> str:
        kind = "v3" if self.v3 else "v2c"
        return f"DeviceTarget({self.name!r}, {self.host}:{self.port}, {kind})"


@dataclass(frozen=True)
class PollOptions:
    timeout: float = 2.0
    retries: int = 1
    max_repetitions: int = 25
    deadline: float = 120.0

    @classmethod
    def from_settings(cls, s: Settings) -> PollOptions:
        return cls(
            s.snmp_timeout_s, s.snmp_retries, s.snmp_max_repetitions, s.snmp_device_deadline_s
        )


@dataclass
class DevicePoll:
    """Everything read from one device, and how far the reading got."""

    name: str
    status: SweepDeviceStatus = SweepDeviceStatus.ERROR
    error: str | None = None
    sys_name: str | None = None
    sys_uptime: int | None = None
    interfaces: list[IfRow] = field(default_factory=list)
    interfaces_complete: bool = False
    arp: list[ArpRow] = field(default_factory=list)
    arp_complete: dict[str, bool] = field(default_factory=dict)  # per context
    routes: list[RouteRow] = field(default_factory=list)
    routes_complete: dict[str, bool] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    varbinds: int = 0
    requests: int = 0
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    seconds: float = 0.0
    walks: list[tuple[str, Walk]] = field(default_factory=list, repr=False)


def make_client(target: DeviceTarget, context: str, opts: PollOptions) -> _Client:
    """The fast v2c client, or pysnmp for SNMPv3. A v2c context is reached Cisco-style as
    ``community@context``; a v3 context is the PDU's contextName."""
    if target.v3 is not None:
        return PysnmpClient(
            target.host,
            target.port,
            v3=target.v3,
            context=context,
            timeout=opts.timeout,
            retries=opts.retries,
        )
    if target.community is None:
        raise SnmpError("no SNMP community or v3 user configured")
    community = f"{target.community}@{context}" if context else target.community
    if target.use_pysnmp:
        return PysnmpClient(
            target.host,
            target.port,
            community=community,
            timeout=opts.timeout,
            retries=opts.retries,
        )
    return FastV2cClient(
        target.host, target.port, community, timeout=opts.timeout, retries=opts.retries
    )


async def poll_device(target: DeviceTarget, opts: PollOptions) -> DevicePoll:
    """Read one device; never raises for SNMP trouble (it is in the status)."""
    poll = DevicePoll(target.name)
    t0 = time.perf_counter()
    got_scalars = False
    failure: SnmpError | None = None
    try:
        async with asyncio.timeout(opts.deadline):
            got_scalars = await _poll(target, opts, poll)
    except TimeoutError:
        poll.problems.append(f"device deadline of {opts.deadline:g} s exceeded")
        failure = SnmpTimeout(poll.problems[-1])
    except SnmpError as exc:
        failure = exc
    _parse(poll)
    for _, walk in poll.walks:
        poll.varbinds += walk.varbinds
        poll.requests += walk.requests
        poll.problems.extend(walk.problems)
    if not got_scalars:
        why = failure or SnmpError("no answer")
        poll.status = (
            SweepDeviceStatus.AUTH_ERROR
            if isinstance(why, SnmpAuthError)
            else SweepDeviceStatus.TIMEOUT
            if isinstance(why, SnmpTimeout)
            else SweepDeviceStatus.ERROR
        )
        poll.error = str(why)
    elif poll.problems:
        poll.status = SweepDeviceStatus.PARTIAL
        poll.error = "; ".join(dict.fromkeys(poll.problems))[:2000]
    else:
        poll.status = SweepDeviceStatus.OK
    poll.finished_at = utcnow()
    poll.seconds = time.perf_counter() - t0
    return poll


async def _poll(target: DeviceTarget, opts: PollOptions, poll: DevicePoll) -> bool:
    """True once the system scalars arrived; fills ``poll.walks`` as it goes."""
    client = make_client(target, "", opts)
    await client.open()
    try:
        vbs = await client.get_bulk([oids.SYS_UPTIME, oids.SYS_NAME], 2, 0)
        poll.varbinds += len(vbs)
        poll.requests += 1
        for oid, value in vbs:
            if oid == (*oids.SYS_UPTIME, 0) and isinstance(value, int):
                poll.sys_uptime = value
            elif oid == (*oids.SYS_NAME, 0):
                poll.sys_name = tables.text(value)
        if not await _walk_context(client, "", opts, poll):
            return True
    finally:
        client.close()
    for context in target.contexts:
        client = make_client(target, context, opts)
        await client.open()
        try:
            if not await _walk_context(client, context, opts, poll):
                break
        finally:
            client.close()
    return True


async def _walk_context(client: _Client, context: str, opts: PollOptions, poll: DevicePoll) -> bool:
    """Main walk then fallbacks for one context; False when the device stopped answering."""
    columns: dict[str, Oid] = {}
    if not context:
        columns |= oids.INTERFACE_COLUMNS
    columns |= oids.ARP_NEW | oids.ROUTES_NEW
    walk = new_walk(columns)
    poll.walks.append((context, walk))
    await walk_columns(client, walk, max_repetitions=opts.max_repetitions)
    if walk.error is not None:
        return False
    fallback: dict[str, Oid] = {}
    for new, old in ((oids.ARP_NEW, oids.ARP_OLD), (oids.ROUTES_NEW, oids.ROUTES_OLD)):
        if walk.complete(*new) and not any(walk.columns[c].rows for c in new):
            fallback |= old
    if fallback:
        walk = new_walk(fallback)
        poll.walks.append((context, walk))
        await walk_columns(client, walk, max_repetitions=opts.max_repetitions)
        if walk.error is not None:
            return False
    return True


def _parse(poll: DevicePoll) -> None:
    """Rows from the walks: per context the main walk, then the fallback walk if any (it
    exists only when the new table was complete and empty)."""
    per_context: dict[str, dict[str, Walk]] = {}
    for context, walk in poll.walks:
        slot = per_context.setdefault(context, {})
        slot["fallback" if "main" in slot else "main"] = walk
    skipped = 0
    used: dict[str, dict[str, str]] = {}
    for context, slot in per_context.items():
        main, fallback = slot["main"], slot.get("fallback")
        if "ifName" in main.columns:
            poll.interfaces = tables.interfaces(main)
            poll.interfaces_complete = main.complete(*oids.INTERFACE_COLUMNS)
        where = used.setdefault(context or "default", {})
        for kind, new, old in (
            ("arp", oids.ARP_NEW, oids.ARP_OLD),
            ("routes", oids.ROUTES_NEW, oids.ROUTES_OLD),
        ):
            use_old = fallback is not None and next(iter(old)) in fallback.columns
            walk = fallback if use_old and fallback is not None else main
            names = old if use_old else new
            parse = _PARSERS[(kind, use_old)]
            rows, bad = parse(walk, context)
            skipped += bad
            where[kind] = _TABLE_NAMES[(kind, use_old)]
            # an empty new table is only the whole truth once the old one was walked too
            # (the device may have died before the fallback walk)
            complete = walk.complete(*names) and (use_old or bool(rows))
            if kind == "arp":
                poll.arp.extend(rows)
                poll.arp_complete[context] = complete
            else:
                poll.routes.extend(rows)
                poll.routes_complete[context] = complete
    poll.tables = {"interfaces": "ifXTable+ifTable", "contexts": used, "skipped_rows": skipped}


_PARSERS: dict[tuple[str, bool], Any] = {
    ("arp", False): tables.arp_new,
    ("arp", True): tables.arp_old,
    ("routes", False): tables.routes_new,
    ("routes", True): tables.routes_old,
}
_TABLE_NAMES = {
    ("arp", False): "ipNetToPhysicalTable",
    ("arp", True): "ipNetToMediaTable",
    ("routes", False): "inetCidrRouteTable",
    ("routes", True): "ipCidrRouteTable",
}
