"""Detections: the rules' findings, newest first, with their evidence on the detail.

A detection with no institution is city-level and hidden from county-scoped callers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.auth import SessionDep
from api.deps import MAX_ID, IdPath, Page, PageDep, ReaderDep, in_scope, page_by_id
from api.problems import Problem
from api.routers.observations import (
    InstitutionFilter,
    KindFilter,
    ObservationOut,
    Since,
    Until,
    evidence_query,
    observation_out,
    time_window,
)
from core.models import Detection, Observation, ObservationSource

router = APIRouter(tags=["evidence"])


class DetectionOut(BaseModel):
    id: int
    kind: str
    institution_code: str | None
    link_id: int | None
    observation_id: int | None
    source: str
    severity: str
    corroborated: bool
    counted: bool
    detected_at: datetime
    case_id: int | None


class DetectionDetailOut(DetectionOut):
    key: str
    evidence: dict[str, Any]
    created_at: datetime
    observation: ObservationOut | None


def detection_out(det: Detection) -> DetectionOut:
    return DetectionOut(
        id=det.id,
        kind=det.kind,
        institution_code=det.institution.code if det.institution else None,
        link_id=det.link_id,
        observation_id=det.observation_id,
        source=det.source.value,
        severity=det.severity,
        corroborated=det.corroborated,
        counted=det.counted,
        detected_at=det.detected_at,
        case_id=det.case_id,
    )


@router.get("/detections", response_model=Page[DetectionOut])
def list_detections(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    kind: KindFilter = None,
    source: ObservationSource | None = None,
    institution: InstitutionFilter = None,
    case_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    corroborated: bool | None = None,
    since: Since = None,
    until: Until = None,
) -> Page[DetectionOut]:
    """Newest first; ``since``/``until`` apply to ``detected_at``."""
    stmt = evidence_query(Detection, actor, kind=kind, source=source, institution=institution)
    if case_id is not None:
        stmt = stmt.where(Detection.case_id == case_id)
    if corroborated is not None:
        stmt = stmt.where(Detection.corroborated.is_(corroborated))
    stmt = time_window(stmt, Detection.detected_at, since, until)
    rows, cursor = page_by_id(session, stmt, Detection.id, page)
    return Page[DetectionOut](items=[detection_out(r) for r in rows], next_cursor=cursor)


@router.get("/detections/{detection_id}", response_model=DetectionDetailOut)
def get_detection(
    detection_id: IdPath, session: SessionDep, actor: ReaderDep
) -> DetectionDetailOut:
    det = session.scalar(
        select(Detection)
        .where(Detection.id == detection_id, in_scope(Detection.institution_id, actor))
        .options(
            selectinload(Detection.institution),
            selectinload(Detection.observation).selectinload(Observation.institution),
        )
    )
    if det is None:
        raise Problem(404, f"no detection {detection_id} in your counties")
    return DetectionDetailOut(
        **detection_out(det).model_dump(),
        key=det.key,
        evidence=dict(det.evidence or {}),
        created_at=det.created_at,
        observation=observation_out(det.observation) if det.observation else None,
    )
