"""The tamper-evident audit log (Jincheng art. 17, Jilin art. 36: traceable and auditable).

Every module records decisions through :func:`record`, inside the same transaction as the change
it describes. Entries are SHA-256 chained over a canonical JSON form; :func:`verify` walks the
chain and names the first entry that was edited, deleted or reordered."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.models import AuditEvent, AuditHead
from core.timeutil import utcnow

GENESIS = "0" * 64
_SECRET_WORDS = ("password", "secret", "community", "auth_key", "priv_key", "token")


def _scrub(value: Any) -> Any:
    """Audit data must never carry secrets (Jilin art. 33): mask keys that name one."""
    if isinstance(value, dict):
        return {
            k: ("***" if any(w in str(k).lower() for w in _SECRET_WORDS) else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def canonical(event: AuditEvent) -> bytes:
    """The bytes the hash covers: every field, sorted keys, no whitespace, UTF-8."""
    body = {
        "id": event.id,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "reason": event.reason,
        "data": event.data,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int | None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one entry to the chain in the caller's transaction.

    The UPDATE of the head row comes first: it takes the write lock (SQLite) or the row lock
    (PostgreSQL), so concurrent appends queue up instead of forking the chain."""
    session.flush()
    # synchronize_session=False: the head row is re-read just below, and letting the ORM
    # evaluate the UPDATE against every object in the session cost a third of a bulk store.
    session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(last_id=AuditHead.last_id)
        .execution_options(synchronize_session=False)
    )
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).execution_options(populate_existing=True)
    ).scalar_one()
    clean = json.loads(json.dumps(_scrub(data or {}), default=str, ensure_ascii=False))
    event = AuditEvent(
        id=head.last_id + 1,
        at=at or utcnow(),
        actor=actor,
        action=action,
        object_type=object_type,
        object_id="" if object_id is None else str(object_id),
        reason=reason,
        data=clean,
        prev_hash=head.last_hash,
    )
    event.hash = compute_hash(event)
    session.add(event)
    head.last_id = event.id
    head.last_hash = event.hash
    session.flush()
    return event


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""


def _events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Walk the chain; the first entry whose content, link or position is wrong is named."""
    prev_hash, expected_id, checked = GENESIS, 1, 0
    for event in _events(session):
        if event.id != expected_id:
            return VerifyResult(False, checked, expected_id, f"entry {expected_id} is missing")
        if event.prev_hash != prev_hash:
            return VerifyResult(
                False, checked, event.id, f"entry {event.id} does not follow entry {event.id - 1}"
            )
        if compute_hash(event) != event.hash:
            return VerifyResult(
                False, checked, event.id, f"entry {event.id} was altered (hash mismatch)"
            )
        prev_hash, expected_id, checked = event.hash, expected_id + 1, checked + 1
    head = session.get(AuditHead, 1)
    if head is None:
        return VerifyResult(False, checked, None, "the chain head is missing")
    if head.last_id != checked or head.last_hash != prev_hash:
        missing = checked + 1
        return VerifyResult(
            False,
            checked,
            missing,
            f"entries after {checked} were removed (head says {head.last_id})",
        )
    return VerifyResult(True, checked)
