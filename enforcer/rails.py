"""Safety rails: what may run at all, and what must wait (DESIGN.md "Enforcement safety rails").

Two kinds of answer. A *refusal* is final for this approval: observe-mode rows are never
executed, and a protected institution is never cut on a policy's approval alone (the action goes
back to ``proposed`` for a person). A *hold* is temporary: caps per run, per hour and per device,
and the circuit breaker, keep the action ``approved`` until the rail opens again.

Decisions documented in docs/enforcer.md: caps and the breaker count and hold cuts only (a
restore gives service back and is what an operator needs after a wrong cut); the breaker holds
automatic cuts only (``approved_by`` starting with ``policy:``) — a person's approval still runs,
because the breaker guards against automated storms (a wrong prefix list, an exporter restart),
not against a person who looked at the case."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import (
    ActionKind,
    ActionMode,
    Detection,
    EnforcementAction,
    EnforcementControl,
)
from core.settings import Settings
from core.timeutil import utcnow
from enforcer import control

POLICY_PREFIX = "policy:"


def approved_by_person(action: EnforcementAction) -> bool:
    """A person approved it (a policy's automatic approval is ``policy:<name>``)."""
    by = (action.approved_by or "").strip()
    return bool(by) and not by.startswith(POLICY_PREFIX)


@dataclass(frozen=True)
class Refusal:
    """Why an approved action may not run; ``demote`` sends it back to ``proposed``."""

    reason: str
    demote: bool = False


def refusal(action: EnforcementAction, protected: bool) -> Refusal | None:
    """Rails that no cap or timing changes: observe mode, protected institutions."""
    if action.mode == ActionMode.OBSERVE:
        return Refusal("observe-mode actions are recorded only, never executed")
    if protected and not approved_by_person(action):
        return Refusal(
            "the institution is protected: a person must approve this action", demote=True
        )
    return None


def cap_hold(
    session: Session, action: EnforcementAction, settings: Settings, started_this_run: int
) -> str | None:
    """Why a cut must wait for a cap, or None. Restores are never capped.

    A cut counts from the moment a worker claims it (``started_at``), whatever came of it:
    a cut that failed or is waiting for a retry still touched the device."""
    if action.kind != ActionKind.CUT:
        return None
    if started_this_run >= settings.enforcement_max_per_run:
        return f"cap: {settings.enforcement_max_per_run} cuts per run reached"
    since = utcnow() - timedelta(hours=1)
    base = select(func.count()).where(
        EnforcementAction.kind == ActionKind.CUT,
        EnforcementAction.started_at >= since,
        EnforcementAction.id != action.id,
    )
    last_hour = session.scalar(base) or 0
    if last_hour >= settings.enforcement_max_per_hour:
        return f"cap: {settings.enforcement_max_per_hour} cuts per hour reached"
    on_device = session.scalar(base.where(EnforcementAction.device_id == action.device_id)) or 0
    if on_device >= settings.enforcement_max_per_device_hour:
        return (
            f"cap: {settings.enforcement_max_per_device_hour} cuts per hour on this device reached"
        )
    return None


def breaker_hold(action: EnforcementAction, tripped: bool) -> str | None:
    """Automatic cuts wait while the breaker is tripped; people's approvals do not."""
    if tripped and action.kind == ActionKind.CUT and not approved_by_person(action):
        return "circuit breaker tripped: automatic cuts held until it is reset"
    return None


def evaluate_breaker(session: Session, settings: Settings) -> bool:
    """Trip the breaker when detections spike; True while it is tripped.

    Counts Detection rows in the last ``enforcement_breaker_window_s``; at or above
    ``enforcement_breaker_threshold`` the breaker trips (audited) and stays tripped until
    :func:`enforcer.control.reset_breaker`."""
    tripped_at = session.scalar(
        select(EnforcementControl.breaker_tripped_at)
        .where(EnforcementControl.id == 1)
        .execution_options(populate_existing=True)
    )
    if tripped_at is not None:
        return True
    window = settings.enforcement_breaker_window_s
    since = utcnow() - timedelta(seconds=window)
    count = session.scalar(select(func.count()).where(Detection.detected_at >= since)) or 0
    if count < settings.enforcement_breaker_threshold:
        return False
    reason = (
        f"{count} detections in the last {window} s (threshold "
        f"{settings.enforcement_breaker_threshold}): automatic cuts held"
    )
    control.trip_breaker(
        session, reason, {"detections": count, "window_s": window, "since": since.isoformat()}
    )
    return True
