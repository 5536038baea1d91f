"""Cases: what the escalation policy made of an institution's findings, and the decisions people
take on them.

The policy's events (``reconnect``, ``consequences_found``, ``no_consequences``, ``close``...)
are the transitions: ``POST /cases/{id}/transitions`` hands them to ``rules.engine.transition``,
which checks role, county (属地原则), state and documents and names the article when it
refuses. Nothing here knows a regulation by name."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from api.auth import SessionDep
from api.deps import (
    MAX_ID,
    NO_CONTROL,
    NO_NUL,
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
from api.routers.inventory import InstitutionOut
from api.routers.observations import InstitutionFilter, KindFilter
from core import audit
from core.actors import Actor
from core.models import (
    Case,
    CaseEvent,
    County,
    Deadline,
    Detection,
    Document,
    EnforcementAction,
    Institution,
)
from core.timeutil import as_utc, utcnow
from rules.engine import allowed_events, documents_present, transition
from rules.errors import PolicyError
from rules.policy import Policy, default_store

router = APIRouter(tags=["cases"])

# Keys the engine writes into CaseEvent.data itself, or that are transition() parameters.
RESERVED_DATA_KEYS = frozenset(
    {"role", "step", "article", "documents", "goto_step", "at", "store", "reason"}
)
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "refused by the policy (the problem names the article)"}
}


# ---------------------------------------------------------------- models


class CaseOut(BaseModel):
    id: int
    institution_code: str
    institution_name: str
    county_code: str
    policy: str
    kind: str
    counts: bool
    strike: int
    step: str
    state: str
    is_open: bool
    consequences: bool | None
    required_documents: list[str]
    opened_at: datetime
    updated_at: datetime
    handling_ended_at: datetime | None
    closed_at: datetime | None


class DeadlineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    description: str
    due_at: datetime
    met_at: datetime | None
    alerted_at: datetime | None
    overdue: bool = False


class ActionBrief(BaseModel):
    id: int
    kind: str
    state: str
    mode: str
    link_id: int
    device: str
    created_at: datetime
    finished_at: datetime | None


class ActionsSummary(BaseModel):
    total: int
    by_state: dict[str, int]
    items: list[ActionBrief]


class AllowedEvent(BaseModel):
    """An event this caller may send now; ``ready`` is false while documents are missing."""

    event: str
    to: str
    article: str
    description: str
    requires_documents: list[str]
    missing_documents: list[str]
    ready: bool


class CaseDetailOut(CaseOut):
    institution: InstitutionOut
    step_title: str | None
    step_article: str | None
    window_start: date | None = None
    window_end: date | None = None
    remediation: str | None
    documents_present: dict[str, list[int]]
    missing_documents: list[str]
    deadlines: list[DeadlineOut]
    actions: ActionsSummary
    allowed_events: list[AllowedEvent]
    version: int


class CaseEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    event: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    detection_id: int | None
    data: dict[str, Any]


class TimelineEntry(BaseModel):
    at: datetime
    type: Literal["case_event", "detection", "action", "document"]
    id: int
    summary: str
    data: dict[str, Any]


class TimelineOut(BaseModel):
    case_id: int
    entries: list[TimelineEntry]


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(
        min_length=1, max_length=64, pattern=NO_CONTROL, description="an event of the case's step"
    )
    reason: str = Field(
        min_length=1, max_length=4000, pattern=NO_NUL, description="why (kept in the audit log)"
    )
    data: dict[str, Any] = Field(default_factory=dict, description="extra facts kept on the event")


class TransitionOut(BaseModel):
    event: CaseEventOut
    case: CaseDetailOut


class CasePatch(BaseModel):
    """Only the remediation text (整改措施) is edited here; everything else moves by events."""

    model_config = ConfigDict(extra="forbid")

    remediation: str | None = Field(max_length=20000, pattern=NO_NUL)


# ---------------------------------------------------------------- helpers


def _case_query(actor: Actor) -> Any:
    return (
        select(Case)
        .where(in_scope(Case.institution_id, actor))
        .options(selectinload(Case.institution).selectinload(Institution.county))
    )


def case_or_404(session: Session, actor: Actor, case_id: int) -> Case:
    case: Case | None = session.scalar(_case_query(actor).where(Case.id == case_id))
    if case is None:
        raise Problem(404, f"no case {case_id} in your counties")
    return case


def _has_nul(value: Any) -> bool:
    """PostgreSQL stores no NUL in text or JSON: refuse it before it gets there."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def case_out(case: Case) -> CaseOut:
    inst = case.institution
    return CaseOut(
        id=case.id,
        institution_code=inst.code,
        institution_name=inst.name,
        county_code=inst.county.code,
        policy=case.policy,
        kind=case.kind,
        counts=case.counts,
        strike=case.strike,
        step=case.step,
        state=case.state,
        is_open=case.is_open,
        consequences=case.consequences,
        required_documents=list(case.required_documents or []),
        opened_at=case.opened_at,
        updated_at=case.updated_at,
        handling_ended_at=case.handling_ended_at,
        closed_at=case.closed_at,
    )


def _policy_of(case: Case) -> Policy | None:
    try:
        return default_store().load(case.policy)
    except PolicyError:
        return None  # the detail still answers; no event is offered without its policy


def events_for(
    case: Case, policy: Policy | None, actor: Actor, present: dict[str, list[int]]
) -> list[AllowedEvent]:
    """The policy's events that leave the case's state, narrowed to what this caller may do."""
    if policy is None or not actor.may_act(case.institution):
        return []
    out = []
    for name, spec in sorted(allowed_events(case, policy).items()):
        if actor.role not in spec.roles:
            continue
        missing = [k for k in spec.requires_documents if k not in present]
        out.append(
            AllowedEvent(
                event=name,
                to=spec.to,
                article=spec.article,
                description=spec.description,
                requires_documents=list(spec.requires_documents),
                missing_documents=missing,
                ready=not missing,
            )
        )
    return out


def case_detail(session: Session, case: Case, actor: Actor) -> CaseDetailOut:
    policy = _policy_of(case)
    step = policy.steps.get(case.step) if policy is not None else None
    present = documents_present(session, case)
    now = utcnow()
    deadlines = []
    for d in session.scalars(
        select(Deadline).where(Deadline.case_id == case.id).order_by(Deadline.due_at, Deadline.id)
    ):
        out = DeadlineOut.model_validate(d)
        out.overdue = d.met_at is None and as_utc(d.due_at) < now
        deadlines.append(out)
    actions = session.scalars(
        select(EnforcementAction)
        .where(EnforcementAction.case_id == case.id)
        .options(selectinload(EnforcementAction.device))
        .order_by(EnforcementAction.id)
    ).all()
    summary = ActionsSummary(
        total=len(actions),
        by_state=dict(Counter(a.state.value for a in actions)),
        items=[
            ActionBrief(
                id=a.id,
                kind=a.kind.value,
                state=a.state.value,
                mode=a.mode.value,
                link_id=a.link_id,
                device=a.device.name,
                created_at=a.created_at,
                finished_at=a.finished_at,
            )
            for a in actions
        ],
    )
    return CaseDetailOut(
        **case_out(case).model_dump(),
        institution=InstitutionOut.model_validate(case.institution),
        step_title=step.title if step else None,
        step_article=step.article if step else None,
        window_start=case.window_start,
        window_end=case.window_end,
        remediation=case.remediation,
        documents_present=present,
        missing_documents=[k for k in case.required_documents or [] if k not in present],
        deadlines=deadlines,
        actions=summary,
        allowed_events=events_for(case, policy, actor, present),
        version=case.version,
    )


# ---------------------------------------------------------------- reads


@router.get("/cases", response_model=Page[CaseOut])
def list_cases(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    state: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_CONTROL)] = None,
    is_open: bool | None = None,
    kind: KindFilter = None,
    institution: InstitutionFilter = None,
    county: Annotated[str | None, Query(pattern=r"^\d{6}$", description="county code")] = None,
    strike: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> Page[CaseOut]:
    """Newest first."""
    stmt = _case_query(actor)
    if state:
        stmt = stmt.where(Case.state == state)
    if is_open is not None:
        stmt = stmt.where(Case.is_open.is_(is_open))
    if kind:
        stmt = stmt.where(Case.kind == kind)
    if institution:
        stmt = stmt.where(Case.institution.has(Institution.code == institution))
    if county:
        stmt = stmt.where(
            Case.institution_id.in_(
                select(Institution.id)
                .join(County, Institution.county_id == County.id)
                .where(County.code == county)
            )
        )
    if strike is not None:
        stmt = stmt.where(Case.strike == strike)
    rows, cursor = page_by_id(session, stmt, Case.id, page)
    return Page[CaseOut](items=[case_out(r) for r in rows], next_cursor=cursor)


@router.get("/cases/{case_id}", response_model=CaseDetailOut)
def get_case(case_id: IdPath, session: SessionDep, actor: ReaderDep) -> CaseDetailOut:
    return case_detail(session, case_or_404(session, actor, case_id), actor)


@router.get("/cases/{case_id}/timeline", response_model=TimelineOut)
def get_timeline(case_id: IdPath, session: SessionDep, actor: ReaderDep) -> TimelineOut:
    """Case events, detections, enforcement actions and documents, oldest first."""
    case = case_or_404(session, actor, case_id)
    entries: list[TimelineEntry] = []
    for ev in session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)):
        entries.append(
            TimelineEntry(
                at=ev.at,
                type="case_event",
                id=ev.id,
                summary=f"{ev.event}: {ev.from_state or '-'} → {ev.to_state} by {ev.actor}",
                data={"reason": ev.reason, "detection_id": ev.detection_id, **(ev.data or {})},
            )
        )
    for det in session.scalars(select(Detection).where(Detection.case_id == case.id)):
        entries.append(
            TimelineEntry(
                at=det.detected_at,
                type="detection",
                id=det.id,
                summary=f"{det.kind} detected ({det.source.value}"
                f"{', corroborated' if det.corroborated else ''})",
                data={"severity": det.severity, "counted": det.counted, "link_id": det.link_id},
            )
        )
    for act in session.scalars(
        select(EnforcementAction).where(EnforcementAction.case_id == case.id)
    ):
        entries.append(
            TimelineEntry(
                at=act.created_at,
                type="action",
                id=act.id,
                summary=f"{act.kind.value} link {act.link_id}: {act.state.value}",
                data={
                    "state": act.state.value,
                    "mode": act.mode.value,
                    "approved_by": act.approved_by,
                    "approved_at": act.approved_at,
                    "finished_at": act.finished_at,
                    "last_error": act.last_error,
                },
            )
        )
    for doc in session.scalars(select(Document).where(Document.case_id == case.id)):
        entries.append(
            TimelineEntry(
                at=doc.uploaded_at,
                type="document",
                id=doc.id,
                summary=f"{doc.kind} filed by {doc.uploaded_by}: {doc.filename}",
                data={"kind": doc.kind, "sha256": doc.sha256, "size": doc.size},
            )
        )
    order = {"detection": 0, "case_event": 1, "action": 2, "document": 3}
    entries.sort(key=lambda e: (as_utc(e.at), order[e.type], e.id))
    return TimelineOut(case_id=case.id, entries=entries)


# ---------------------------------------------------------------- writes


@router.post(
    "/cases/{case_id}/transitions",
    status_code=201,
    response_model=TransitionOut,
    responses=_CONFLICT,
)
def post_transition(
    case_id: IdPath,
    body: TransitionIn,
    session: SessionDep,
    actor: WriterDep,
    idem: IdempotencyDep,
) -> Any:
    """Apply a policy event (reconnect, consequences_found, no_consequences, close...).

    Send ``Idempotency-Key`` when a retry must not act twice: the first answer is replayed."""
    if (replay := idem.replay(session, actor)) is not None:
        return replay
    case = case_or_404(session, actor, case_id)
    may_act_on(session, actor, case.institution_id)
    if _has_nul(body.data):
        raise Problem(422, "data: text may not contain NUL characters")
    clash = sorted(set(body.data) & RESERVED_DATA_KEYS)
    if clash:
        raise Problem(422, f"data may not use the keys {', '.join(clash)}: the engine sets them")
    try:
        event = transition(session, case, body.event, actor, reason=body.reason, **body.data)
        session.flush()
    except StaleDataError as exc:
        raise Problem(409, f"case {case_id} changed while you acted; reload it and retry") from exc
    out = TransitionOut(
        event=CaseEventOut.model_validate(event), case=case_detail(session, case, actor)
    )
    return idem.respond(201, out)


@router.patch("/cases/{case_id}", response_model=CaseDetailOut)
def patch_case(
    case_id: IdPath, body: CasePatch, session: SessionDep, actor: WriterDep
) -> CaseDetailOut:
    """Record the remediation (整改措施) the institution took; it goes into the 24-hour report."""
    case = case_or_404(session, actor, case_id)
    may_act_on(session, actor, case.institution_id)
    before = case.remediation
    case.remediation = body.remediation
    try:
        session.flush()
    except StaleDataError as exc:
        raise Problem(409, f"case {case_id} changed while you edited; reload it and retry") from exc
    audit.record(
        session,
        actor=actor.name,
        action="case.remediation",
        object_type="case",
        object_id=case.id,
        reason="remediation text " + ("set" if body.remediation else "cleared"),
        data={"before_chars": len(before or ""), "after_chars": len(body.remediation or "")},
    )
    return case_detail(session, case, actor)
