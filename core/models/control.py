"""Service-wide switches that must survive restarts and be shared by every process.

The enforcement kill switch and the circuit breaker live in the database, not in memory, so
that `edgewarden enforcement pause` on one host stops the worker on another within a second."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base
from core.timeutil import utcnow


class EnforcementControl(Base):
    """The single row (id 1) that says whether enforcement may run."""

    __tablename__ = "enforcement_control"

    id: Mapped[int] = mapped_column(primary_key=True)
    paused: Mapped[bool] = mapped_column(default=False)
    paused_by: Mapped[str | None] = mapped_column(String(100))
    paused_at: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(Text)
    breaker_tripped_at: Mapped[datetime | None]
    breaker_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
