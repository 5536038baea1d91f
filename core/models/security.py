"""People, tokens and the audit chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, TimestampMixin, str_enum
from core.models.enums import Role
from core.models.inventory import County
from core.timeutil import utcnow

user_counties = Table(
    "user_counties",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("county_id", ForeignKey("counties.id", ondelete="CASCADE"), primary_key=True),
)


class User(TimestampMixin, Base):
    """A person or a tool. A county operator acts only within ``counties`` (属地原则)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    disabled: Mapped[bool] = mapped_column(default=False)

    counties: Mapped[list[County]] = relationship(secondary=user_counties)
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


class ApiToken(TimestampMixin, Base):
    """Only the SHA-256 of a token is stored; ``prefix`` lets people tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class AuditEvent(Base):
    """Append-only, SHA-256 chained: ``hash`` covers the canonical form of this row and
    ``prev_hash``. ``prev_hash`` is unique, so the chain can never fork."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """One row: the chain's tip. Updating it first serialises appends on SQLite and
    PostgreSQL alike, and it lets `audit verify` notice rows deleted from the end."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
