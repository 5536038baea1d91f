"""API tokens: random, shown once, stored as SHA-256 (a token is high-entropy, so a plain hash
is enough; no password-hashing KDF is needed)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.audit import record
from core.errors import ValidationFailed
from core.models import ApiToken, County, Role, User
from core.timeutil import utcnow

TOKEN_PREFIX = "ew_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    role: Role,
    counties: Sequence[str] = (),
    name: str | None = None,
    actor: str = "cli",
) -> tuple[User, str]:
    """Create a user (or reuse one by name) with a new token; returns the clear token once."""
    if role == Role.COUNTY_OPERATOR and not counties:
        raise ValidationFailed("a county_operator token needs at least one --county")
    found = {c.code: c for c in session.scalars(select(County).where(County.code.in_(counties)))}
    unknown = [c for c in counties if c not in found]
    if unknown:
        raise ValidationFailed(f"unknown county code(s): {', '.join(unknown)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    user = session.scalar(select(User).where(User.name == name)) if name else None
    if user is None:
        user = User(name=name or f"{role.value}-{token[3:11]}", role=role)
        session.add(user)
    elif user.role != role:
        raise ValidationFailed(
            f"user {name!r} exists with role {user.role.value}, not {role.value}"
        )
    user.counties = [found[c] for c in counties]
    row = ApiToken(user=user, prefix=token[:11], token_hash=hash_token(token))
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action="token.create",
        object_type="user",
        object_id=user.id,
        reason=f"token {row.prefix}… for role {role.value}",
        data={"role": role.value, "counties": list(counties), "key_prefix": row.prefix},
    )
    return user, token


def authenticate(session: Session, token: str) -> User | None:
    """The active user a token belongs to, or None (unknown, revoked, expired, disabled)."""
    row = session.scalar(
        select(ApiToken)
        .where(ApiToken.token_hash == hash_token(token))
        .options(selectinload(ApiToken.user).selectinload(User.counties))
    )
    now = utcnow()
    if row is None or row.revoked_at is not None or row.user.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    row.last_used_at = now
    return row.user
