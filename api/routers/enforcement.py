"""Enforcement actions and the kill switch, over the enforcer's own queue and control calls.

Every decision goes through :mod:`enforcer.queue` / :mod:`enforcer.control`, which check the
state machine and write the audit entry, so the API adds only who may ask: actions belong to a
link and so to an institution, and a county operator sees and decides only its counties'
actions (属地原则). The kill switch and the circuit breaker stop or release the whole city's
enforcement, so only the city bureau may touch them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from api.auth import SessionDep
from api.deps import (
    MAX_ID,
    AdminDep,
    IdempotencyDep,
    IdPath,
    Page,
    PageDep,
    ReaderDep,
    WriterDep,
    in_scope,
    may_act_on,
    page_by_id,
)
from api.problems import Problem
from core.actors import Actor
from core.models import (
    ActionKind,
    ActionMode,
    ActionState,
    Device,
    EnforcementAction,
    Institution,
    Link,
    Role,
)
from enforcer import control, queue

router = APIRouter(tags=["enforcement"])

# Roles that may read device configuration backups and device addresses (Jilin art. 33).
_CONFIG_READERS = (Role.CITY_ADMIN, Role.AUDITOR)


class ActionOut(BaseModel):
    """One queued action, without device configuration."""

    id: int
    case_id: int | None
    link_id: int
    institution: str
    device: str
    interface: str | None
    kind: ActionKind
    method: str
    mode: ActionMode
    state: ActionState
    corroborated: bool
    reason: str
    requested_by: str
    approved_by: str | None
    approved_at: datetime | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ActionDetailOut(ActionOut):
    """An action with what was (or will be) sent; ``backup`` only for city_admin/auditor."""

    target: dict[str, Any]
    commands: list[str]
    verification: str | None
    transcript: str | None
    backup: str | None = Field(
        None, description="configuration before the change; city_admin and auditor only"
    )


class DryRunOut(BaseModel):
    action_id: int
    device: str
    device_type: str
    commands: list[str] = Field(description="exactly what the worker would send; nothing sent")


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="why, for the audit log")


class OptionalReasonIn(BaseModel):
    reason: str = Field("", max_length=2000)


class EnforcementStatusOut(BaseModel):
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    reason: str | None
    breaker_tripped: bool
    breaker_tripped_at: datetime | None
    breaker_reason: str | None
    counts: dict[str, int] = Field(description="actions by state (in your counties)")


def _out(action: EnforcementAction) -> dict[str, Any]:
    link = action.link
    return {
        "id": action.id,
        "case_id": action.case_id,
        "link_id": action.link_id,
        "institution": link.institution.code,
        "device": action.device.name,
        "interface": link.interface,
        "kind": action.kind,
        "method": action.method,
        "mode": action.mode,
        "state": action.state,
        "corroborated": action.corroborated,
        "reason": action.reason,
        "requested_by": action.requested_by,
        "approved_by": action.approved_by,
        "approved_at": action.approved_at,
        "attempts": action.attempts,
        "last_error": action.last_error,
        "next_attempt_at": action.next_attempt_at,
        "created_at": action.created_at,
        "updated_at": action.updated_at,
        "started_at": action.started_at,
        "finished_at": action.finished_at,
    }


def _detail(action: EnforcementAction, actor: Actor) -> ActionDetailOut:
    privileged = actor.role in _CONFIG_READERS
    target = dict(action.target or {})
    if not privileged:  # management addresses are topology (Jilin art. 33)
        target.pop("host", None)
        target.pop("port", None)
    return ActionDetailOut(
        **_out(action),
        target=target,
        commands=list(action.commands or []),
        verification=action.verification,
        transcript=action.transcript,
        backup=action.backup if privileged else None,
    )


def _scoped_actions(actor: Actor) -> Any:
    return (
        select(EnforcementAction)
        .join(Link, EnforcementAction.link_id == Link.id)
        .where(in_scope(Link.institution_id, actor))
        .options(
            selectinload(EnforcementAction.link).selectinload(Link.institution),
            selectinload(EnforcementAction.device),
        )
    )


def _visible(session: Session, actor: Actor, action_id: int) -> EnforcementAction:
    """The action if the caller may see it; 404 alike for missing and out-of-county."""
    found: EnforcementAction | None = session.scalar(
        _scoped_actions(actor)
        .where(EnforcementAction.id == action_id)
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise Problem(404, f"no enforcement action {action_id} in your counties")
    return found


def _writable(session: Session, actor: Actor, action_id: int) -> EnforcementAction:
    action = _visible(session, actor, action_id)
    may_act_on(session, actor, action.link.institution_id)
    return action


@router.get("/actions", response_model=Page[ActionOut])
def list_actions(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    state: Annotated[ActionState | None, Query()] = None,
    kind: Annotated[ActionKind | None, Query()] = None,
    mode: Annotated[ActionMode | None, Query()] = None,
    case_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    institution: Annotated[str | None, Query(max_length=32, description="code")] = None,
    device: Annotated[str | None, Query(max_length=100, description="device name")] = None,
) -> Page[ActionOut]:
    stmt = _scoped_actions(actor)
    if state is not None:
        stmt = stmt.where(EnforcementAction.state == state)
    if kind is not None:
        stmt = stmt.where(EnforcementAction.kind == kind)
    if mode is not None:
        stmt = stmt.where(EnforcementAction.mode == mode)
    if case_id is not None:
        stmt = stmt.where(EnforcementAction.case_id == case_id)
    if institution:
        stmt = stmt.where(Link.institution.has(Institution.code == institution))
    if device:
        stmt = stmt.where(EnforcementAction.device.has(Device.name == device))
    rows, cursor = page_by_id(session, stmt, EnforcementAction.id, page)
    return Page[ActionOut](items=[ActionOut(**_out(a)) for a in rows], next_cursor=cursor)


@router.get("/actions/{action_id}", response_model=ActionDetailOut)
def get_action(action_id: IdPath, session: SessionDep, actor: ReaderDep) -> ActionDetailOut:
    return _detail(_visible(session, actor, action_id), actor)


@router.get("/actions/{action_id}/dry-run", response_model=DryRunOut)
def dry_run(action_id: IdPath, session: SessionDep, actor: ReaderDep) -> DryRunOut:
    """The exact commands the action would send, rendered by its driver; no device contact."""
    action = _visible(session, actor, action_id)
    commands = queue.dry_run(session, action.id)
    return DryRunOut(
        action_id=action.id,
        device=action.device.name,
        device_type=action.device.device_type,
        commands=commands,
    )


@router.post("/actions/{action_id}/approve", response_model=ActionOut)
def approve(
    action_id: IdPath, body: ReasonIn, session: SessionDep, actor: WriterDep, idem: IdempotencyDep
) -> Any:
    _writable(session, actor, action_id)
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    action = queue.approve(session, action_id, actor.name, body.reason)
    return idem.respond(200, ActionOut(**_out(action)))


@router.post("/actions/{action_id}/cancel", response_model=ActionOut)
def cancel(
    action_id: IdPath, body: ReasonIn, session: SessionDep, actor: WriterDep, idem: IdempotencyDep
) -> Any:
    _writable(session, actor, action_id)
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    action = queue.cancel(session, action_id, actor.name, body.reason)
    return idem.respond(200, ActionOut(**_out(action)))


@router.post("/actions/{action_id}/retry", response_model=ActionOut)
def retry(
    action_id: IdPath,
    session: SessionDep,
    actor: WriterDep,
    idem: IdempotencyDep,
    body: Annotated[OptionalReasonIn | None, Body()] = None,
) -> Any:
    """Re-approve a failed action; the worker tries it again from the first attempt."""
    _writable(session, actor, action_id)
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    action = queue.retry(session, action_id, actor.name, body.reason if body else "")
    return idem.respond(200, ActionOut(**_out(action)))


def _status(session: Session, actor: Actor) -> EnforcementStatusOut:
    st = control.status(session)
    counts: dict[str, int] = {str(s): 0 for s in ActionState}
    stmt = (
        select(EnforcementAction.state, func.count())
        .join(Link, EnforcementAction.link_id == Link.id)
        .where(in_scope(Link.institution_id, actor))
        .group_by(EnforcementAction.state)
    )
    for state, n in session.execute(stmt):
        counts[str(state)] = n
    return EnforcementStatusOut(
        paused=st.paused,
        paused_by=st.paused_by,
        paused_at=st.paused_at,
        reason=st.pause_reason,
        breaker_tripped=st.breaker_tripped,
        breaker_tripped_at=st.breaker_tripped_at,
        breaker_reason=st.breaker_reason,
        counts=counts,
    )


@router.get("/enforcement", response_model=EnforcementStatusOut)
def enforcement_status(session: SessionDep, actor: ReaderDep) -> EnforcementStatusOut:
    return _status(session, actor)


@router.post("/enforcement/pause", response_model=EnforcementStatusOut)
def pause(body: ReasonIn, session: SessionDep, actor: AdminDep, idem: IdempotencyDep) -> Any:
    """The kill switch: every worker stops before its next action or configuration batch."""
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    control.pause(session, actor.name, body.reason)
    return idem.respond(200, _status(session, actor))


@router.post("/enforcement/resume", response_model=EnforcementStatusOut)
def resume(body: ReasonIn, session: SessionDep, actor: AdminDep, idem: IdempotencyDep) -> Any:
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    control.resume(session, actor.name, body.reason)
    return idem.respond(200, _status(session, actor))


@router.post("/enforcement/reset-breaker", response_model=EnforcementStatusOut)
def reset_breaker(
    body: ReasonIn, session: SessionDep, actor: AdminDep, idem: IdempotencyDep
) -> Any:
    """Close the circuit breaker so automatic cuts run again (an explicit, audited decision)."""
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    control.reset_breaker(session, actor.name, body.reason)
    return idem.respond(200, _status(session, actor))
