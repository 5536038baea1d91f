"""The audit log: query it and verify its hash chain (Jincheng art. 17, Jilin art. 36).

Only the city bureau and auditors read it. County operators are refused outright rather than
scoped: entries name objects of many kinds (actions, cases, tokens, sweeps, the kill switch)
and many are city-level, so "entries about my counties" cannot be decided in one WHERE clause
without leaking or hiding entries; a county reads its own history through its cases and
actions instead."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.auth import ActorDep, SessionDep
from api.deps import Page, PageDep, page_by_id
from api.problems import Problem
from core.actors import Actor
from core.audit import verify
from core.models import AuditEvent, Role
from core.timeutil import as_utc

router = APIRouter(tags=["audit"])


def audit_reader(actor: ActorDep) -> Actor:
    """city_admin and auditor; everyone else gets a 403 that says why."""
    if actor.role in (Role.CITY_ADMIN, Role.AUDITOR):
        return actor
    why = (
        "the audit log is city-wide and is not split by county; read your counties' history "
        "through their cases and actions"
        if actor.role == Role.COUNTY_OPERATOR
        else "only city_admin and auditor read the audit log"
    )
    raise Problem(403, f"role {actor.role.value} may not read the audit log: {why}")


AuditReader = Annotated[Actor, Depends(audit_reader)]


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    reason: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    first_bad_id: int | None
    problem: str


@router.get("/audit", response_model=Page[AuditEventOut])
def list_audit(
    session: SessionDep,
    actor: AuditReader,
    page: PageDep,
    action: Annotated[str | None, Query(max_length=64, description="e.g. token.create")] = None,
    audit_actor: Annotated[str | None, Query(alias="actor", max_length=100)] = None,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="before (ISO 8601)")] = None,
) -> Page[AuditEventOut]:
    """Entries newest first; each carries its hash and the previous entry's."""
    stmt = select(AuditEvent)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if audit_actor:
        stmt = stmt.where(AuditEvent.actor == audit_actor)
    if object_type:
        stmt = stmt.where(AuditEvent.object_type == object_type)
    if object_id:
        stmt = stmt.where(AuditEvent.object_id == object_id)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= as_utc(since))
    if until is not None:
        stmt = stmt.where(AuditEvent.at < as_utc(until))
    if since is not None and until is not None and as_utc(since) >= as_utc(until):
        raise Problem(422, "since must be before until")
    rows, cursor = page_by_id(session, stmt, AuditEvent.id, page)
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(r) for r in rows], next_cursor=cursor
    )


@router.get("/audit/verify", response_model=VerifyOut)
def verify_chain(session: SessionDep, actor: AuditReader) -> VerifyOut:
    """Walk the whole chain (as ``edgewarden audit verify`` does); names the first bad entry."""
    result = verify(session)
    return VerifyOut(
        ok=result.ok,
        checked=result.checked,
        first_bad_id=result.first_bad_id,
        problem=result.problem,
    )
