"""The global kill switch and the circuit breaker (``EnforcementControl`` row 1).

Both live in the database so that a pause typed on one host stops a worker on another: the
worker reads the row before every action and before every configuration batch, and it polls
every ``enforcement_poll_s`` (default 0.5 s), so a pause takes effect within a second. Every
change is audited with who and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.models import ActionState, EnforcementAction, EnforcementControl
from core.timeutil import utcnow
from enforcer.errors import EnforcementError


@dataclass(frozen=True)
class Status:
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    pause_reason: str | None
    breaker_tripped_at: datetime | None
    breaker_reason: str | None
    counts: dict[str, int]

    @property
    def breaker_tripped(self) -> bool:
        return self.breaker_tripped_at is not None

    def render(self) -> str:
        lines = [
            f"enforcement: {'PAUSED' if self.paused else 'running'}",
        ]
        if self.paused:
            lines.append(f"  paused by {self.paused_by} at {self.paused_at}: {self.pause_reason}")
        if self.breaker_tripped_at is not None:
            lines.append(
                f"circuit breaker: TRIPPED at {self.breaker_tripped_at}: {self.breaker_reason} "
                "(automatic cuts held; `edgewarden enforcement reset-breaker` to reset)"
            )
        else:
            lines.append("circuit breaker: closed")
        lines.append(
            "actions: " + ", ".join(f"{state} {n}" for state, n in sorted(self.counts.items()))
        )
        return "\n".join(lines)


def _row(session: Session, lock: bool = False) -> EnforcementControl:
    stmt = select(EnforcementControl).where(EnforcementControl.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt.execution_options(populate_existing=True)).first()
    if row is None:
        # The migration seeds row 1; recreate it rather than fail open or closed silently.
        row = EnforcementControl(id=1, paused=False)
        session.add(row)
        session.flush()
    return row


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise EnforcementError("an actor name is required for the audit log")
    return actor


def pause(session: Session, actor: str, reason: str) -> Status:
    """Stop all enforcement now (the kill switch). Idempotent; audited each time."""
    actor = _actor(actor)
    if not reason.strip():
        raise EnforcementError("a reason is required to pause enforcement")
    row = _row(session, lock=True)
    row.paused, row.paused_by, row.paused_at, row.pause_reason = True, actor, utcnow(), reason
    audit.record(
        session,
        actor=actor,
        action="enforcement.paused",
        object_type="enforcement_control",
        object_id=1,
        reason=reason,
    )
    session.flush()
    return status(session)


def resume(session: Session, actor: str, reason: str = "") -> Status:
    """Let enforcement run again. Audited."""
    actor = _actor(actor)
    row = _row(session, lock=True)
    was = row.pause_reason
    row.paused, row.paused_by, row.paused_at, row.pause_reason = False, None, None, None
    audit.record(
        session,
        actor=actor,
        action="enforcement.resumed",
        object_type="enforcement_control",
        object_id=1,
        reason=reason,
        data={"was_paused_for": was},
    )
    session.flush()
    return status(session)


def is_paused(session: Session) -> bool:
    """A fresh read of the kill switch (never a cached value)."""
    paused = session.scalar(
        select(EnforcementControl.paused)
        .where(EnforcementControl.id == 1)
        .execution_options(populate_existing=True)
    )
    return bool(paused)


def trip_breaker(session: Session, reason: str, data: dict[str, object]) -> bool:
    """Trip the breaker unless it already is; True if this call tripped it. Audited."""
    row = _row(session, lock=True)
    if row.breaker_tripped_at is not None:
        return False
    row.breaker_tripped_at, row.breaker_reason = utcnow(), reason
    audit.record(
        session,
        actor="enforcer",
        action="enforcement.breaker_tripped",
        object_type="enforcement_control",
        object_id=1,
        reason=reason,
        data=data,
    )
    session.flush()
    return True


def reset_breaker(session: Session, actor: str, reason: str) -> Status:
    """Close the breaker so automatic cuts run again: an explicit, audited decision."""
    actor = _actor(actor)
    if not reason.strip():
        raise EnforcementError("a reason is required to reset the circuit breaker")
    row = _row(session, lock=True)
    was = (row.breaker_tripped_at, row.breaker_reason)
    row.breaker_tripped_at, row.breaker_reason = None, None
    audit.record(
        session,
        actor=actor,
        action="enforcement.breaker_reset",
        object_type="enforcement_control",
        object_id=1,
        reason=reason,
        data={"tripped_at": was[0], "tripped_for": was[1]},
    )
    session.flush()
    return status(session)


def status(session: Session) -> Status:
    row = _row(session)
    counts: dict[str, int] = {str(s): 0 for s in ActionState}
    for state, n in session.execute(
        select(EnforcementAction.state, func.count()).group_by(EnforcementAction.state)
    ):
        counts[str(state)] = n
    return Status(
        paused=row.paused,
        paused_by=row.paused_by,
        paused_at=row.paused_at,
        pause_reason=row.pause_reason,
        breaker_tripped_at=row.breaker_tripped_at,
        breaker_reason=row.breaker_reason,
        counts=counts,
    )
