"""The durable action queue: every state change of an ``EnforcementAction`` after ``proposed``.

proposed → approved → executing → verified | failed | cancelled. The public calls (approve,
cancel, retry, dry_run, list_actions) are what the CLI and the API use; the ``claim`` …
``finish_*`` calls are the worker's. Each change is one UPDATE guarded by the state it expects
(so two workers, or a worker and an operator, can never both win) and one audit entry."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, aliased

from core import audit
from core.models import (
    ActionKind,
    ActionMode,
    ActionState,
    Device,
    EnforcementAction,
    Link,
    LinkState,
)
from core.timeutil import utcnow
from enforcer.drivers import get_driver
from enforcer.errors import ActionNotFound, InvalidTransition
from enforcer.rails import POLICY_PREFIX
from enforcer.targets import Target, resolve

OBJECT = "enforcement_action"


def get(session: Session, action_id: int) -> EnforcementAction:
    action = session.get(EnforcementAction, action_id, populate_existing=True)
    if action is None:
        raise ActionNotFound(f"no enforcement action {action_id}")
    return action


def _person(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise InvalidTransition("an actor name is required")
    if actor.startswith(POLICY_PREFIX):
        raise InvalidTransition(f"{actor!r} is not a person: only people approve here")
    return actor


def plan(session: Session, action: EnforcementAction) -> tuple[Target, list[str]]:
    """Resolve the target (refusing unsafe ones) and render the exact commands."""
    target = resolve(session, action)
    commands = get_driver(target.device_type).render(action.kind, target)
    return target, commands


def dry_run(session: Session, action_id: int) -> list[str]:
    """The exact configuration commands the action would send; connects to nothing and
    changes nothing (refusals such as an uplink target raise, as they would at run time)."""
    action = get(session, action_id)
    return plan(session, action)[1]


def approve(session: Session, action_id: int, actor: str, reason: str = "") -> EnforcementAction:
    """A person approves a proposed action (observe-mode rows are never approvable)."""
    actor = _person(actor)
    action = get(session, action_id)
    if action.mode == ActionMode.OBSERVE:
        raise InvalidTransition(
            f"action {action_id} is observe-mode: it is recorded only, never executed"
        )
    if action.state != ActionState.PROPOSED:
        raise InvalidTransition(f"action {action_id} is {action.state}, not proposed")
    target, commands = plan(session, action)  # refuse an unsafe target now, not at run time
    action.state = ActionState.APPROVED
    action.approved_by, action.approved_at = actor, utcnow()
    action.last_error = None
    audit.record(
        session,
        actor=actor,
        action="enforcement.approved",
        object_type=OBJECT,
        object_id=action.id,
        reason=reason or action.reason,
        data={"kind": str(action.kind), "target": target.to_json(), "commands": commands},
    )
    session.flush()
    return action


def cancel(session: Session, action_id: int, actor: str, reason: str) -> EnforcementAction:
    """Withdraw an action that is not running (proposed, approved or failed)."""
    actor = (actor or "").strip() or "unknown"
    action = get(session, action_id)
    allowed = (ActionState.PROPOSED, ActionState.APPROVED, ActionState.FAILED)
    if action.state not in allowed:
        raise InvalidTransition(f"action {action_id} is {action.state}: it cannot be cancelled")
    _transition(session, action, ActionState.CANCELLED, actor, "enforcement.cancelled", reason)
    return action


def retry(session: Session, action_id: int, actor: str, reason: str = "") -> EnforcementAction:
    """Re-approve a failed action (a person decided to try again); attempts start over."""
    actor = _person(actor)
    action = get(session, action_id)
    if action.state != ActionState.FAILED:
        raise InvalidTransition(f"action {action_id} is {action.state}, not failed")
    if action.mode == ActionMode.OBSERVE:
        raise InvalidTransition(f"action {action_id} is observe-mode: never executed")
    action.approved_by, action.approved_at = actor, utcnow()
    action.attempts, action.next_attempt_at = 0, None
    _transition(
        session,
        action,
        ActionState.APPROVED,
        actor,
        "enforcement.retried",
        reason or f"retry after: {action.last_error}",
    )
    return action


def list_actions(
    session: Session, states: list[ActionState] | None = None, limit: int = 100
) -> list[EnforcementAction]:
    stmt = select(EnforcementAction).order_by(EnforcementAction.id.desc()).limit(limit)
    if states:
        stmt = stmt.where(EnforcementAction.state.in_(states))
    return list(session.scalars(stmt))


def _transition(
    session: Session,
    action: EnforcementAction,
    to: ActionState,
    actor: str,
    event: str,
    reason: str,
    data: dict[str, Any] | None = None,
) -> None:
    before = action.state
    action.state = to
    audit.record(
        session,
        actor=actor,
        action=event,
        object_type=OBJECT,
        object_id=action.id,
        reason=reason,
        data={"from": str(before), "to": str(to), **(data or {})},
    )
    session.flush()


# --- the worker's side ---------------------------------------------------------------------


def claim(
    session: Session,
    action_id: int,
    device_id: int,
    worker: str,
    lease_s: float,
    target: Target,
    commands: list[str],
) -> bool:
    """Atomically take an approved action for ``worker``: one UPDATE guarded by
    ``state = 'approved'`` and by no other action running on the same device; True if this
    worker won. On PostgreSQL the device row is locked first so that two claims for the same
    device serialize (SQLite serializes all writers anyway)."""
    session.execute(select(Device.id).where(Device.id == device_id).with_for_update())
    other = aliased(EnforcementAction)
    now = utcnow()
    result = session.execute(
        update(EnforcementAction)
        .where(
            EnforcementAction.id == action_id,
            EnforcementAction.state == ActionState.APPROVED,
            ~exists().where(
                other.device_id == device_id,
                other.state == ActionState.EXECUTING,
            ),
        )
        .values(
            state=ActionState.EXECUTING,
            worker=worker,
            lease_until=now + timedelta(seconds=lease_s),
            attempts=EnforcementAction.attempts + 1,
            started_at=now,
            finished_at=None,
            target=target.to_json(),
            commands=commands,
            method=target.method,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    won = getattr(result, "rowcount", 0) == 1
    if won:
        audit.record(
            session,
            actor=worker,
            action="enforcement.claimed",
            object_type=OBJECT,
            object_id=action_id,
            data={"target": target.to_json(), "commands": commands},
        )
    return won


def take_over(session: Session, action_id: int, worker: str, lease_s: float) -> bool:
    """Take an ``executing`` action whose lease expired (or that this worker's name held
    before a crash) for reconciliation."""
    now = utcnow()
    result = session.execute(
        update(EnforcementAction)
        .where(
            EnforcementAction.id == action_id,
            EnforcementAction.state == ActionState.EXECUTING,
            (EnforcementAction.worker == worker) | (EnforcementAction.lease_until < now),
        )
        .values(worker=worker, lease_until=now + timedelta(seconds=lease_s), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def stale(session: Session, worker: str) -> list[int]:
    """Executing actions left by a crashed worker: this worker's name, or an expired lease."""
    now = utcnow()
    return list(
        session.scalars(
            select(EnforcementAction.id)
            .where(
                EnforcementAction.state == ActionState.EXECUTING,
                (EnforcementAction.worker == worker) | (EnforcementAction.lease_until < now),
            )
            .order_by(EnforcementAction.id)
        )
    )


def record_progress(session: Session, action: EnforcementAction, **fields: Any) -> None:
    """Store transcript/backup/verification as they happen, so a crash keeps what was sent."""
    for name, value in fields.items():
        setattr(action, name, value)
    session.flush()


def hold(session: Session, action: EnforcementAction, reason: str) -> None:
    """An approved action waits for a rail (cap, breaker); audited once per new reason."""
    if action.last_error == reason:
        return
    action.last_error = reason
    audit.record(
        session,
        actor="enforcer",
        action="enforcement.held",
        object_type=OBJECT,
        object_id=action.id,
        reason=reason,
    )
    session.flush()


def demote(session: Session, action: EnforcementAction, reason: str) -> None:
    """Back to ``proposed``: it needs a person's approval (protected institution)."""
    action.approved_by, action.approved_at = None, None
    action.mode = ActionMode.APPROVE
    action.last_error = reason
    _transition(
        session, action, ActionState.PROPOSED, "enforcer", "enforcement.needs_approval", reason
    )


def refuse(session: Session, action: EnforcementAction, reason: str, worker: str) -> None:
    """An approved action that must never run as it is: failed, with the reason."""
    action.last_error = reason
    action.finished_at = utcnow()
    _transition(session, action, ActionState.FAILED, worker, "enforcement.refused", reason)


def hand_back(session: Session, action: EnforcementAction, worker: str, reason: str) -> None:
    """Executing → approved without having changed the device (kill switch, shutdown):
    the attempt is not counted."""
    action.attempts = max(0, action.attempts - 1)
    action.worker, action.lease_until, action.started_at = None, None, None
    action.last_error = reason
    _transition(session, action, ActionState.APPROVED, worker, "enforcement.handed_back", reason)


def requeue(
    session: Session,
    action: EnforcementAction,
    worker: str,
    reason: str,
    delay_s: float | None = None,
) -> None:
    """Executing → approved after reconciliation (the attempt stays counted)."""
    action.worker, action.lease_until = None, None
    action.last_error = reason
    if delay_s is not None:
        action.next_attempt_at = utcnow() + timedelta(seconds=delay_s)
    _transition(session, action, ActionState.APPROVED, worker, "enforcement.reconciled", reason)


def retry_later(
    session: Session,
    action: EnforcementAction,
    worker: str,
    error: str,
    delay_s: float,
    max_attempts: int,
) -> None:
    """A transient failure: approved again after ``delay_s``, or failed once attempts run out."""
    action.worker, action.lease_until = None, None
    action.last_error = error
    if action.attempts >= max_attempts:
        action.finished_at = utcnow()
        _transition(
            session,
            action,
            ActionState.FAILED,
            worker,
            "enforcement.failed",
            f"gave up after {action.attempts} attempts: {error}",
            {"transient": True},
        )
        return
    action.next_attempt_at = utcnow() + timedelta(seconds=delay_s)
    _transition(
        session,
        action,
        ActionState.APPROVED,
        worker,
        "enforcement.retry_scheduled",
        error,
        {"attempt": action.attempts, "next_attempt_at": action.next_attempt_at},
    )


def fail(session: Session, action: EnforcementAction, worker: str, error: str, **data: Any) -> None:
    """A permanent failure: stays failed until a person calls :func:`retry`."""
    action.worker, action.lease_until = None, None
    action.last_error = error
    action.finished_at = utcnow()
    _transition(session, action, ActionState.FAILED, worker, "enforcement.failed", error, data)


def verified(
    session: Session, action: EnforcementAction, worker: str, detail: str, **data: Any
) -> None:
    """Verified on the device: the link's state follows (cut, or up after a restore)."""
    action.worker, action.lease_until = None, None
    action.last_error = None
    action.finished_at = utcnow()
    link = session.get(Link, action.link_id)
    assert link is not None
    link.state = LinkState.CUT if action.kind == ActionKind.CUT else LinkState.UP
    _transition(
        session,
        action,
        ActionState.VERIFIED,
        worker,
        "enforcement.verified",
        detail,
        {"link": link.id, "link_state": str(link.state), **data},
    )


def due(session: Session, now: datetime, limit: int = 500) -> list[EnforcementAction]:
    """Approved actions whose backoff has passed, oldest first."""
    return list(
        session.scalars(
            select(EnforcementAction)
            .where(
                EnforcementAction.state == ActionState.APPROVED,
                (EnforcementAction.next_attempt_at.is_(None))
                | (EnforcementAction.next_attempt_at <= now),
            )
            .order_by(EnforcementAction.id)
            .limit(limit)
        )
    )
