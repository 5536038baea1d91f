"""One SNMP sweep over many devices: :func:`run_sweep`, a plain async function that the CLI
and the scheduler call.

Polls run concurrently under a semaphore (``snmp_concurrency``), each with its own timeout,
retries and deadline, so a dead or slow device costs its own deadline and nobody else's.
Results are written by a single writer (one transaction per device, in a worker thread so the
event loop keeps polling) as soon as each device finishes: a crash mid-sweep keeps what was
already stored, and SQLite never sees two writers. The Sweep row records start, end, counts
and status; each device gets a SweepDevice row with its status and reason."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from collector.snmp.findings import findings, judge, record_findings
from collector.snmp.history import Stored, store_arp, store_interfaces
from collector.snmp.inventory import Inventory
from collector.snmp.poller import DevicePoll, DeviceTarget, PollOptions, poll_device
from collector.snmp.tables import ArpRow
from collector.snmp.v3 import V3Credentials
from core.crypto import SecretBox, secret_box
from core.db import session_factory
from core.errors import ConfigError, EdgeWardenError
from core.models import (
    Device,
    SnmpVersion,
    Sweep,
    SweepDevice,
    SweepDeviceStatus,
    SweepStatus,
)
from core.settings import Settings, get_settings
from core.timeutil import utcnow

log = logging.getLogger(__name__)

_DATA_STATUSES = (SweepDeviceStatus.OK, SweepDeviceStatus.PARTIAL)


@dataclass
class DeviceResult:
    """One device's outcome, as stored in its SweepDevice row."""

    name: str
    status: SweepDeviceStatus
    error: str | None = None
    sys_name: str | None = None
    varbinds: int = 0
    interfaces: int = 0
    arp_entries: int = 0
    routes: int = 0
    observations: int = 0
    detections: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == SweepDeviceStatus.OK


@dataclass
class SweepResult:
    sweep_id: int
    status: SweepStatus
    started_at: datetime
    finished_at: datetime
    devices: list[DeviceResult] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[DeviceResult]:
        return [d for d in self.devices if not d.ok]

    @property
    def varbinds(self) -> int:
        return sum(d.varbinds for d in self.devices)

    @property
    def observations(self) -> int:
        return sum(d.observations for d in self.devices)

    @property
    def detections(self) -> int:
        return sum(d.detections for d in self.devices)


# (result, devices done, devices total)
Progress = Callable[[DeviceResult, int, int], None]


@dataclass
class _Job:
    device_id: int
    name: str
    target: DeviceTarget | None
    error: str | None = None  # a device that cannot be polled at all (credentials)


async def run_sweep(
    database: str | sessionmaker[Session],
    *,
    device_names: Sequence[str] | None = None,
    trigger: str = "cli",
    progress: Progress | None = None,
    settings: Settings | None = None,
    requested_by: str = "system",
    sweep_id: int | None = None,
) -> SweepResult:
    """Sweep the named devices (default: every enabled device with SNMP settings) now.

    Raises EdgeWardenError before anything is written for unknown device names or a missing
    secret key; device trouble never raises, it is each device's status. ``sweep_id`` names a
    ``running`` Sweep row the caller created already (the API answers with its id before the
    sweep starts); if the sweep cannot start, that row is marked failed with the reason."""
    settings = settings or get_settings()
    factory = session_factory(database) if isinstance(database, str) else database
    opts = PollOptions.from_settings(settings)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        sid, started, jobs, inv = await asyncio.to_thread(
            _prepare, factory, device_names, trigger, requested_by, settings, sweep_id
        )
    except BaseException as exc:
        if sweep_id is not None:  # the caller's row must not stay "running" forever
            await asyncio.to_thread(_abandon, factory, sweep_id, f"sweep not started: {exc}")
        raise
    results: list[DeviceResult] = []
    queue: asyncio.Queue[tuple[_Job, DevicePoll] | None] = asyncio.Queue()
    sem = asyncio.Semaphore(settings.snmp_concurrency)

    async def poll_one(job: _Job) -> None:
        if job.target is None:
            poll = DevicePoll(job.name, SweepDeviceStatus.ERROR, error=job.error)
            poll.finished_at = poll.started_at
        else:
            async with sem:
                poll = await poll_device(job.target, opts)
        await queue.put((job, poll))

    async def writer() -> None:
        while (item := await queue.get()) is not None:
            job, poll = item
            res = await asyncio.to_thread(_write_device, factory, sid, job, poll, inv)
            results.append(res)
            if progress is not None:
                progress(res, len(results), len(jobs))

    error: str | None = None
    writer_task = asyncio.create_task(writer())
    try:
        await asyncio.gather(*(poll_one(j) for j in jobs))
    except BaseException as exc:  # cancelled or a bug: record it, keep what was stored
        error = f"sweep aborted: {exc!r}"
        raise
    finally:
        await queue.put(None)
        if error is None:
            await writer_task
        else:
            writer_task.cancel()
        finished = utcnow()
        status = await asyncio.to_thread(_finish, factory, sid, results, len(jobs), error)
    order = {j.name: i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: order.get(r.name, 0))
    return SweepResult(
        sid,
        status,
        started,
        finished,
        results,
        cpu_seconds=time.process_time() - cpu0,
        wall_seconds=time.perf_counter() - wall0,
    )


def _has_snmp(d: Device) -> bool:
    return bool(d.snmp_user if d.snmp_version == SnmpVersion.V3 else d.snmp_community_enc)


def _prepare(
    factory: sessionmaker[Session],
    device_names: Sequence[str] | None,
    trigger: str,
    requested_by: str,
    settings: Settings,
    sweep_id: int | None = None,
) -> tuple[int, datetime, list[_Job], Inventory]:
    with factory() as session, session.begin():
        if device_names:
            wanted = list(dict.fromkeys(device_names))
            found = {
                d.name: d for d in session.scalars(select(Device).where(Device.name.in_(wanted)))
            }
            unknown = [n for n in wanted if n not in found]
            if unknown:
                raise EdgeWardenError(f"unknown device(s): {', '.join(unknown)}")
            devices = [found[n] for n in wanted]
        else:
            devices = [
                d
                for d in session.scalars(
                    select(Device).where(Device.enabled.is_(True)).order_by(Device.name)
                )
                if _has_snmp(d)
            ]
        box: SecretBox | None = secret_box(settings) if devices else None
        jobs = [_job(d, box) for d in devices]
        inv = Inventory.load(session)
        if sweep_id is not None:
            sweep = session.get(Sweep, sweep_id)
            if sweep is None or sweep.status != SweepStatus.RUNNING or sweep.finished_at:
                raise EdgeWardenError(f"sweep {sweep_id} is not a running sweep waiting to start")
            sweep.devices_total = len(jobs)
        else:
            sweep = Sweep(
                trigger=trigger[:32],
                requested_by=requested_by[:100],
                status=SweepStatus.RUNNING,
                started_at=utcnow(),
                devices_total=len(jobs),
            )
            session.add(sweep)
        session.flush()
        return sweep.id, sweep.started_at, jobs, inv


def _job(d: Device, box: SecretBox | None) -> _Job:
    def clear(token: str | None) -> str | None:
        return box.decrypt(token) if token and box is not None else None

    try:
        if not _has_snmp(d):
            raise ConfigError("no SNMP community or v3 user in the inventory")
        contexts = tuple(c for c in (d.snmp_contexts or []) if c)
        if d.snmp_version == SnmpVersion.V3:
            creds = V3Credentials(
                d.snmp_user or "",
                d.snmp_auth_protocol,
                clear(d.snmp_auth_key_enc),
                d.snmp_priv_protocol,
                clear(d.snmp_priv_key_enc),
            )
            target = DeviceTarget(d.name, d.mgmt_address, d.snmp_port, v3=creds, contexts=contexts)
        else:
            target = DeviceTarget(
                d.name,
                d.mgmt_address,
                d.snmp_port,
                community=clear(d.snmp_community_enc),
                contexts=contexts,
            )
    except ConfigError as exc:
        return _Job(d.id, d.name, None, error=str(exc))
    return _Job(d.id, d.name, target)


def _write_device(
    factory: sessionmaker[Session],
    sweep_id: int,
    job: _Job,
    poll: DevicePoll,
    inv: Inventory,
) -> DeviceResult:
    res = DeviceResult(
        job.name,
        poll.status,
        poll.error,
        poll.sys_name,
        poll.varbinds,
        len(poll.interfaces),
        len(poll.arp),
        len(poll.routes),
        seconds=round(poll.seconds, 3),
    )
    extra: dict[str, Any] = {}
    try:
        with factory() as session, session.begin():
            if poll.status in _DATA_STATUSES:
                now = utcnow()
                stored = store_interfaces(session, job.device_id, poll, inv, sweep_id, now)
                arp: list[ArpRow] = store_arp(session, job.device_id, poll, inv, stored, now)
                found = findings(job.device_id, poll, inv, stored, arp)
                observations = record_findings(session, job.device_id, found, now, sweep_id)
                detections, problem = judge(session, observations)
                res.observations = len(observations)
                res.detections = len(detections)
                extra = _summary(stored, res, problem)
                if problem:
                    res.error = "; ".join(filter(None, [res.error, problem]))
            _add_row(session, sweep_id, job, poll, res, extra)
    except Exception as exc:  # a storage bug must not lose the other devices' results
        log.exception("storing the SNMP results of %s failed", job.name)
        res.status = SweepDeviceStatus.ERROR
        res.error = f"storing results failed: {exc}"[:2000]
        res.observations = res.detections = 0
        with factory() as session, session.begin():
            _add_row(session, sweep_id, job, poll, res, {})
    return res


def _summary(stored: Stored, res: DeviceResult, problem: str | None) -> dict[str, Any]:
    return {
        "links_mapped": len(stored.links),
        "arp_new": stored.arp_new,
        "arp_gone": stored.arp_gone,
        "mac_changes": stored.mac_changes,
        "observations": res.observations,
        "detections": res.detections,
        "rules_error": problem,
    }


def _add_row(
    session: Session,
    sweep_id: int,
    job: _Job,
    poll: DevicePoll,
    res: DeviceResult,
    extra: dict[str, Any],
) -> None:
    session.add(
        SweepDevice(
            sweep_id=sweep_id,
            device_id=job.device_id,
            status=res.status,
            started_at=poll.started_at,
            finished_at=poll.finished_at or utcnow(),
            varbinds=poll.varbinds,
            interfaces=len(poll.interfaces),
            arp_entries=len(poll.arp),
            routes=len(poll.routes),
            sys_name=(poll.sys_name or None) and poll.sys_name[:255],
            sys_uptime=poll.sys_uptime,
            tables={
                **poll.tables,
                "requests": poll.requests,
                "seconds": round(poll.seconds, 3),
                "interfaces_complete": poll.interfaces_complete,
                "arp_complete": {k or "default": v for k, v in poll.arp_complete.items()},
                "routes_complete": {k or "default": v for k, v in poll.routes_complete.items()},
                **extra,
            },
            error=res.error,
        )
    )


def _abandon(factory: sessionmaker[Session], sweep_id: int, error: str) -> None:
    """Mark a caller-created sweep that never started as failed (only if still running)."""
    with factory() as session, session.begin():
        sweep = session.get(Sweep, sweep_id)
        if sweep is not None and sweep.status == SweepStatus.RUNNING:
            sweep.status, sweep.finished_at, sweep.error = SweepStatus.FAILED, utcnow(), error


def _finish(
    factory: sessionmaker[Session],
    sweep_id: int,
    results: list[DeviceResult],
    total: int,
    error: str | None,
) -> SweepStatus:
    ok = sum(1 for r in results if r.ok)
    if error is not None:
        status = SweepStatus.FAILED
    elif ok == total:
        status = SweepStatus.OK
    elif ok == 0:
        status = SweepStatus.FAILED
    else:
        status = SweepStatus.PARTIAL
    with factory() as session, session.begin():
        sweep = session.get(Sweep, sweep_id)
        if sweep is None:
            raise EdgeWardenError(f"sweep {sweep_id} vanished from the database")
        sweep.status = status
        sweep.finished_at = utcnow()
        sweep.devices_ok = ok
        sweep.devices_failed = len(results) - ok
        sweep.varbinds = sum(r.varbinds for r in results)
        sweep.observations = sum(r.observations for r in results)
        sweep.error = error
    return status
