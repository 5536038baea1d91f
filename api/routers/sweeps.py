"""SNMP sweeps on request, their status, and the scheduler's job status.

``POST /sweeps`` creates the Sweep row in the request's transaction and commits it before it
answers 202, so the id it hands out can be polled at once; the sweep itself
(:func:`collector.snmp.sweep.run_sweep` with that ``sweep_id``) runs in a background thread with
its own event loop, writing each device's result as it finishes. One API sweep at a time: a
second request while one runs gets 409 (the check and the insert are serialised in the process
and, on PostgreSQL, across processes by an advisory lock)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import threading
import time
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.orm import Session, selectinload

from api.auth import SessionDep
from api.deps import AdminDep, IdempotencyDep, IdPath, Page, PageDep, ReaderDep, page_by_id
from api.problems import Problem
from core import audit
from core.actors import Actor
from core.models import County, Device, Sweep, SweepDevice, SweepDeviceStatus, SweepStatus
from core.settings import get_settings
from core.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

router = APIRouter(tags=["sweeps"])

TRIGGER = "api"
_ADVISORY_KEY = 0x45570007  # "EW" + issue 7: serialises API sweep starts on PostgreSQL
_start_lock = threading.Lock()
_threads: set[threading.Thread] = set()


class SweepIn(BaseModel):
    devices: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="device names; default every enabled SNMP device",
    )


class SweepAccepted(BaseModel):
    id: int
    status: SweepStatus
    location: str


class SweepOut(BaseModel):
    id: int
    trigger: str
    requested_by: str
    status: SweepStatus
    started_at: datetime
    finished_at: datetime | None
    devices_total: int
    devices_ok: int
    devices_failed: int
    varbinds: int
    observations: int
    error: str | None


class SweepDeviceOut(BaseModel):
    device: str
    status: SweepDeviceStatus
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    varbinds: int
    interfaces: int
    arp_entries: int
    routes: int
    sys_name: str | None
    observations: int | None
    detections: int | None


class SweepDetailOut(SweepOut):
    devices: list[SweepDeviceOut] = Field(description="per-device results (in your counties)")


def _sweep_out(s: Sweep) -> dict[str, Any]:
    return {name: getattr(s, name) for name in SweepOut.model_fields}


def _device_out(r: SweepDevice) -> SweepDeviceOut:
    tables = r.tables or {}
    return SweepDeviceOut(
        device=r.device.name,
        status=r.status,
        error=r.error,
        started_at=r.started_at,
        finished_at=r.finished_at,
        varbinds=r.varbinds,
        interfaces=r.interfaces,
        arp_entries=r.arp_entries,
        routes=r.routes,
        sys_name=r.sys_name,
        observations=tables.get("observations"),
        detections=tables.get("detections"),
    )


def _stale_after(sweep: Sweep) -> timedelta:
    """How long a running sweep can take at most; past that its process died."""
    s = get_settings()
    waves = math.ceil(max(sweep.devices_total, 1) / s.snmp_concurrency)
    return timedelta(seconds=2 * waves * s.snmp_device_deadline_s + 60)


def _running_api_sweep(session: Session) -> Sweep | None:
    """The running API sweep, if any; a row whose process died is marked failed instead."""
    now = utcnow()
    for sweep in session.scalars(
        select(Sweep).where(Sweep.trigger == TRIGGER, Sweep.status == SweepStatus.RUNNING)
    ):
        if as_utc(sweep.started_at) + _stale_after(sweep) > now:
            return sweep
        sweep.status, sweep.finished_at = SweepStatus.FAILED, now
        sweep.error = "abandoned: the process running this sweep ended before it finished"
    return None


def _check_devices(session: Session, names: list[str]) -> list[str]:
    wanted = list(dict.fromkeys(names))
    found = set(session.scalars(select(Device.name).where(Device.name.in_(wanted))))
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise Problem(422, f"unknown device(s): {', '.join(unknown[:20])}; see GET /devices")
    return wanted


def _run_in_background(url: str, sweep_id: int, devices: list[str] | None, actor: str) -> None:
    from collector.snmp.sweep import run_sweep  # the collector is heavy; load it when used

    def main() -> None:
        try:
            asyncio.run(
                run_sweep(
                    url,
                    device_names=devices,
                    trigger=TRIGGER,
                    requested_by=actor,
                    sweep_id=sweep_id,
                )
            )
        except Exception:  # run_sweep has marked the row failed; keep the traceback
            log.exception("API sweep %s failed", sweep_id)
        finally:
            _threads.discard(threading.current_thread())

    thread = threading.Thread(target=main, name=f"api-sweep-{sweep_id}", daemon=True)
    _threads.add(thread)
    thread.start()


def wait_for_sweeps(timeout: float) -> bool:
    """For a graceful shutdown: wait up to ``timeout`` s for API sweeps in this process to
    finish; False if one is still running (its row is then marked abandoned by the next
    POST /sweeps once it is stale)."""
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in _threads)


@router.post("/sweeps", status_code=202, response_model=SweepAccepted)
def start_sweep(
    request: Request,
    session: SessionDep,
    actor: AdminDep,
    idem: IdempotencyDep,
    body: Annotated[SweepIn | None, Body()] = None,
) -> Any:
    """Start one SNMP sweep now (city_admin); poll the Location until it is not running."""
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    devices = _check_devices(session, body.devices) if body and body.devices else None
    with _start_lock:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
        running = _running_api_sweep(session)
        if running is not None:
            raise Problem(
                409,
                f"API sweep {running.id} is still running (started {running.started_at}); "
                f"wait for GET /api/v1/sweeps/{running.id} to finish",
                sweep_id=running.id,
            )
        sweep = Sweep(
            trigger=TRIGGER,
            requested_by=actor.name[:100],
            status=SweepStatus.RUNNING,
            started_at=utcnow(),
        )
        session.add(sweep)
        session.flush()
        audit.record(
            session,
            actor=actor.name,
            action="sweep.requested",
            object_type="sweep",
            object_id=sweep.id,
            data={"devices": devices},
        )
        location = f"{request.scope.get('root_path', '')}/api/v1/sweeps/{sweep.id}"
        response = idem.respond(
            202, SweepAccepted(id=sweep.id, status=SweepStatus.RUNNING, location=location)
        )
        session.commit()  # the row exists before anyone can poll it
    _run_in_background(request.app.state.database_url, sweep.id, devices, actor.name)
    response.headers["Location"] = location
    return response


@router.get("/sweeps", response_model=Page[SweepOut])
def list_sweeps(session: SessionDep, actor: ReaderDep, page: PageDep) -> Page[SweepOut]:
    rows, cursor = page_by_id(session, select(Sweep), Sweep.id, page)
    return Page[SweepOut](items=[SweepOut(**_sweep_out(s)) for s in rows], next_cursor=cursor)


def _device_scope(actor: Actor) -> Any:
    """Devices of the caller's counties (every device when city-wide)."""
    if actor.city_wide:
        return None
    return Device.county_id.in_(
        select(County.id).where(County.code.in_(sorted(actor.county_codes)))
    )


@router.get("/sweeps/{sweep_id}", response_model=SweepDetailOut)
def get_sweep(sweep_id: IdPath, session: SessionDep, actor: ReaderDep) -> SweepDetailOut:
    sweep = session.get(Sweep, sweep_id, populate_existing=True)
    if sweep is None:
        raise Problem(404, f"no sweep {sweep_id}")
    stmt = (
        select(SweepDevice)
        .join(Device, SweepDevice.device_id == Device.id)
        .where(SweepDevice.sweep_id == sweep_id)
        .options(selectinload(SweepDevice.device))
        .order_by(Device.name)
    )
    if (scope := _device_scope(actor)) is not None:
        stmt = stmt.where(scope)
    return SweepDetailOut(
        **_sweep_out(sweep), devices=[_device_out(r) for r in session.scalars(stmt)]
    )


def _job_status_func() -> Any:
    """``api.jobs.job_status`` if the scheduler's module is there yet (another change)."""
    try:
        module = importlib.import_module("api.jobs")
    except ModuleNotFoundError as exc:
        if exc.name != "api.jobs":  # api.jobs is there but broken: say so, do not hide it
            raise
        return None
    return getattr(module, "job_status", None)


_job_status = _job_status_func()
if _job_status is not None:

    @router.get("/jobs")
    def list_jobs(session: SessionDep, actor: ReaderDep) -> Any:
        """The scheduled jobs: last run, next run, who holds each lock."""
        return jsonable_encoder(_job_status(session))
