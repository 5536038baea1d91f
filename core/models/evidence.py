"""What was seen (observations) and what it means (detections).

An observation is aggregated evidence from one source; a detection is the rules' verdict on it,
the unit that joins or opens a case."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, TimestampMixin, str_enum
from core.models.enums import ObservationSource
from core.models.inventory import Institution, Link
from core.timeutil import utcnow


class Observation(TimestampMixin, Base):
    """Evidence folded per (institution, kind, source, destination, port, protocol).

    ``key`` is the aggregation key chosen by the collector; delivering the same key again
    updates counts and ``last_seen`` instead of adding a row."""

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[ObservationSource] = mapped_column(str_enum(ObservationSource))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id"))
    exporter_id: Mapped[int | None] = mapped_column(ForeignKey("exporters.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    src_addr: Mapped[str | None] = mapped_column(String(64))
    dst_addr: Mapped[str | None] = mapped_column(String(64))
    dst_port: Mapped[int | None]
    protocol: Mapped[int | None]
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    flows: Mapped[int] = mapped_column(BigInteger, default=0)
    packets: Mapped[int] = mapped_column(BigInteger, default=0)
    octets: Mapped[int] = mapped_column(BigInteger, default=0)
    sample: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    institution: Mapped[Institution | None] = relationship()
    link: Mapped[Link | None] = relationship()


class Detection(TimestampMixin, Base):
    """A finding of one kind against one institution. ``key`` makes delivery idempotent."""

    __tablename__ = "detections"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id"))
    observation_id: Mapped[int | None] = mapped_column(ForeignKey("observations.id"))
    source: Mapped[ObservationSource] = mapped_column(str_enum(ObservationSource))
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    corroborated: Mapped[bool] = mapped_column(default=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    detected_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    counted: Mapped[bool] = mapped_column(default=False)

    institution: Mapped[Institution | None] = relationship()
    link: Mapped[Link | None] = relationship()
    observation: Mapped[Observation | None] = relationship()
