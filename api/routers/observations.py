"""Observations: the aggregated evidence the collectors stored, newest first.

Observations that name no institution are city-level and hidden from county-scoped callers
(``in_scope`` treats NULL as outside every county)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from api.auth import SessionDep
from api.deps import NO_CONTROL, IdPath, InstCode, Page, PageDep, ReaderDep, in_scope, page_by_id
from api.problems import Problem
from core.actors import Actor
from core.models import Detection, Institution, Observation, ObservationSource
from core.timeutil import as_utc

router = APIRouter(tags=["evidence"])

Since = Annotated[datetime | None, Query(description="ISO 8601; without a zone it is taken as UTC")]
Until = Annotated[
    datetime | None, Query(description="ISO 8601, exclusive; without a zone it is taken as UTC")
]
InstitutionFilter = InstCode
KindFilter = Annotated[str | None, Query(min_length=1, max_length=32, pattern=NO_CONTROL)]


def time_window(
    stmt: Select[Any], column: Any, since: datetime | None, until: datetime | None
) -> Select[Any]:
    """``since <= column < until``; naive times are UTC, as the database stores them."""
    try:
        lo = as_utc(since) if since is not None else None
        hi = as_utc(until) if until is not None else None
    except OverflowError as exc:
        raise Problem(422, "since/until lie outside the years 1 to 9999 in UTC") from exc
    if lo is not None and hi is not None and hi <= lo:
        raise Problem(422, "until must be later than since")
    if lo is not None:
        stmt = stmt.where(column >= lo)
    if hi is not None:
        stmt = stmt.where(column < hi)
    return stmt


def evidence_query(
    model: type[Observation] | type[Detection],
    actor: Actor,
    *,
    kind: str | None,
    source: ObservationSource | None,
    institution: str | None,
) -> Select[Any]:
    """The scoped list query both evidence lists share: observations and detections carry
    the same ``institution_id``/``kind``/``source`` columns and filters."""
    stmt = (
        select(model)
        .where(in_scope(model.institution_id, actor))
        .options(selectinload(model.institution))
    )
    if kind:
        stmt = stmt.where(model.kind == kind)
    if source:
        stmt = stmt.where(model.source == source)
    if institution:
        stmt = stmt.where(model.institution.has(Institution.code == institution))
    return stmt


class ObservationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    kind: str
    institution_code: str | None
    link_id: int | None
    exporter_id: int | None
    device_id: int | None
    src_addr: str | None
    dst_addr: str | None
    dst_port: int | None
    protocol: int | None
    first_seen: datetime
    last_seen: datetime
    flows: int
    packets: int
    octets: int


class ObservationDetailOut(ObservationOut):
    key: str
    sample: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    detection_ids: list[int]


def observation_out(obs: Observation) -> ObservationOut:
    return ObservationOut(
        **_fields(obs), institution_code=obs.institution.code if obs.institution else None
    )


def _fields(obs: Observation) -> dict[str, Any]:
    names = set(ObservationOut.model_fields) - {"institution_code"}
    return {n: getattr(obs, n) for n in names}


@router.get("/observations", response_model=Page[ObservationOut])
def list_observations(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    kind: KindFilter = None,
    source: ObservationSource | None = None,
    institution: InstitutionFilter = None,
    since: Since = None,
    until: Until = None,
) -> Page[ObservationOut]:
    """Newest first; ``since``/``until`` apply to ``last_seen``."""
    stmt = evidence_query(Observation, actor, kind=kind, source=source, institution=institution)
    stmt = time_window(stmt, Observation.last_seen, since, until)
    rows, cursor = page_by_id(session, stmt, Observation.id, page)
    return Page[ObservationOut](items=[observation_out(r) for r in rows], next_cursor=cursor)


@router.get("/observations/{observation_id}", response_model=ObservationDetailOut)
def get_observation(
    observation_id: IdPath, session: SessionDep, actor: ReaderDep
) -> ObservationDetailOut:
    obs = session.scalar(
        select(Observation)
        .where(Observation.id == observation_id, in_scope(Observation.institution_id, actor))
        .options(selectinload(Observation.institution))
    )
    if obs is None:
        raise Problem(404, f"no observation {observation_id} in your counties")
    detection_ids = session.scalars(
        select(Detection.id).where(Detection.observation_id == obs.id).order_by(Detection.id)
    ).all()
    return ObservationDetailOut(
        **observation_out(obs).model_dump(),
        key=obs.key,
        sample=list(obs.sample or []),
        created_at=obs.created_at,
        updated_at=obs.updated_at,
        detection_ids=list(detection_ids),
    )
