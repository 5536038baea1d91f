"""Cases: what the escalation policy made of an institution's findings, step by step.

States and events are policy data (rules/policies/*.yaml), so they are strings here."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, str_enum
from core.models.enums import ActionKind, ActionMode, ActionState
from core.models.inventory import Device, Institution, Link
from core.timeutil import utcnow


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    policy: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    counts: Mapped[bool] = mapped_column(default=False)
    strike: Mapped[int] = mapped_column(default=0)
    step: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(64), index=True)
    is_open: Mapped[bool] = mapped_column(default=True, index=True)
    window_start: Mapped[date | None]
    window_end: Mapped[date | None]
    required_documents: Mapped[list[str]] = mapped_column(JSON, default=list)
    consequences: Mapped[bool | None]
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    handling_ended_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    remediation: Mapped[str | None] = mapped_column(Text)  # 整改措施, operator input for the report
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - two writers never both win

    institution: Mapped[Institution] = relationship()
    events: Mapped[list[CaseEvent]] = relationship(back_populates="case", order_by="CaseEvent.id")


class CaseEvent(Base):
    """One transition of a case, with who, when, why and the evidence (DESIGN.md)."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(64))
    to_state: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    detection_id: Mapped[int | None] = mapped_column(ForeignKey("detections.id"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    case: Mapped[Case] = relationship(back_populates="events")


class Deadline(Base):
    """A date something is owed by (a document, the 24-hour report); overdue ones alert."""

    __tablename__ = "deadlines"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    kind: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(300), default="")
    due_at: Mapped[datetime] = mapped_column(index=True)
    met_at: Mapped[datetime | None]
    alerted_at: Mapped[datetime | None]


class EnforcementAction(Base):
    """A row of the durable action queue: proposed → approved → executing → verified | failed
    | cancelled. The enforcer owns the transitions after ``approved``."""

    __tablename__ = "enforcement_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    kind: Mapped[ActionKind] = mapped_column(str_enum(ActionKind))
    method: Mapped[str] = mapped_column(String(32), default="shutdown_interface")
    mode: Mapped[ActionMode] = mapped_column(str_enum(ActionMode), default=ActionMode.APPROVE)
    state: Mapped[ActionState] = mapped_column(
        str_enum(ActionState), default=ActionState.PROPOSED, index=True
    )
    corroborated: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(100))
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    commands: Mapped[list[str]] = mapped_column(JSON, default=list)
    backup: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[str | None] = mapped_column(Text)
    verification: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]

    case: Mapped[Case | None] = relationship()
    link: Mapped[Link] = relationship()
    device: Mapped[Device] = relationship()
