"""Retention: delete data older than ``retention_days`` (≥ 183, Cybersecurity Law art. 21)
that nothing still needs.

Deleted when older than the cutoff: observations, detections without a case, interface
samples, inactive ARP history rows and MAC changes, finished sweeps with their per-device
rows, delivered webhook deliveries, idempotency records; and for cases *closed* before the
cutoff, their detections, documents and generated reports (rows and stored files).

Never deleted: anything an open case needs (its detections and their observations, every
observation of an institution that has an open case, its documents, reports, actions,
events, deadlines); cases, case events, deadlines and enforcement actions themselves (they are
small and the monthly statistics and the history of strikes are built from them); and the
audit log. The audit log is kept forever: its hash chain starts at entry 1 and
``edgewarden audit verify`` walks it from there, so cutting its head would need a checkpoint
scheme that this module does not attempt.

Files are unlinked only after the transaction commits (a session ``after_commit`` hook), and
only if no row references the blob any more (checked again in a new session), so a rollback
or a concurrent upload of the same content never loses a file."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, and_, delete, event, exists, not_, select, update
from sqlalchemy.orm import Session

from core.models import (
    ArpEntry,
    Case,
    CaseEvent,
    Detection,
    Document,
    IdempotencyRecord,
    Incident,
    InterfaceSample,
    MacChange,
    Observation,
    Report,
    Sweep,
    SweepDevice,
    WebhookDelivery,
)
from core.settings import Settings
from core.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)


def _count(result: Any) -> int:
    return int(result.rowcount or 0) if isinstance(result, CursorResult) else 0


def cleanup(session: Session, *, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Delete what the retention period no longer covers; returns rows deleted per kind
    (``files`` counts blobs scheduled for removal after commit). The caller commits."""
    now = as_utc(now) if now is not None else utcnow()
    cutoff = now - timedelta(days=settings.retention_days)
    removed: dict[str, int] = {}
    opts = {"synchronize_session": False}

    old_cases = select(Case.id).where(Case.is_open.is_(False), Case.closed_at < cutoff)
    open_insts = select(Case.institution_id).where(Case.is_open.is_(True))

    # Documents and reports of cases closed before the cutoff (files go after commit).
    doomed_docs: list[Any] = session.execute(
        select(Document.id, Document.sha256).where(Document.case_id.in_(old_cases))
    ).all()  # type: ignore[assignment]
    doomed_reports = session.execute(
        select(Report.id, Report.sha256, Report.path).where(Report.case_id.in_(old_cases))
    ).all()
    removed["documents"] = _count(
        session.execute(
            delete(Document).where(Document.case_id.in_(old_cases)), execution_options=opts
        )
    )
    removed["reports"] = _count(
        session.execute(delete(Report).where(Report.case_id.in_(old_cases)), execution_options=opts)
    )

    # Detections: of old closed cases, and caseless ones older than the cutoff.
    doomed_det = select(Detection.id).where(
        (Detection.case_id.in_(old_cases))
        | (Detection.case_id.is_(None) & (Detection.detected_at < cutoff))
    )
    session.execute(
        update(CaseEvent).where(CaseEvent.detection_id.in_(doomed_det)).values(detection_id=None),
        execution_options=opts,
    )
    removed["detections"] = _count(
        session.execute(
            delete(Detection).where(
                (Detection.case_id.in_(old_cases))
                | (Detection.case_id.is_(None) & (Detection.detected_at < cutoff))
            ),
            execution_options=opts,
        )
    )

    # Observations: old, referenced by no remaining detection, not of an institution with an
    # open case (an open case may still need any of its evidence).
    removed["observations"] = _count(
        session.execute(
            delete(Observation).where(
                Observation.last_seen < cutoff,
                not_(exists().where(Detection.observation_id == Observation.id)),
                (Observation.institution_id.is_(None))
                | not_(Observation.institution_id.in_(open_insts)),
            ),
            execution_options=opts,
        )
    )

    removed["interface_samples"] = _count(
        session.execute(
            delete(InterfaceSample).where(InterfaceSample.at < cutoff), execution_options=opts
        )
    )
    removed["arp_entries"] = _count(
        session.execute(
            delete(ArpEntry).where(
                ArpEntry.active.is_(False),
                ArpEntry.last_seen < cutoff,
                (ArpEntry.institution_id.is_(None)) | not_(ArpEntry.institution_id.in_(open_insts)),
            ),
            execution_options=opts,
        )
    )
    removed["mac_changes"] = _count(
        session.execute(delete(MacChange).where(MacChange.at < cutoff), execution_options=opts)
    )

    old_sweeps = select(Sweep.id).where(
        Sweep.started_at < cutoff,
        Sweep.finished_at.is_not(None),
        not_(exists().where(InterfaceSample.sweep_id == Sweep.id)),
    )
    removed["sweep_devices"] = _count(
        session.execute(
            delete(SweepDevice).where(SweepDevice.sweep_id.in_(old_sweeps)), execution_options=opts
        )
    )
    removed["sweeps"] = _count(
        session.execute(
            delete(Sweep).where(
                Sweep.started_at < cutoff,
                Sweep.finished_at.is_not(None),
                not_(exists().where(InterfaceSample.sweep_id == Sweep.id)),
                not_(exists().where(SweepDevice.sweep_id == Sweep.id)),
            ),
            execution_options=opts,
        )
    )
    removed["webhook_deliveries"] = _count(
        session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.state == "delivered",
                and_(
                    WebhookDelivery.delivered_at.is_not(None),
                    WebhookDelivery.delivered_at < cutoff,
                ),
            ),
            execution_options=opts,
        )
    )
    removed["idempotency_records"] = _count(
        session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff),
            execution_options=opts,
        )
    )
    # Incident-only documents (no case) of incidents closed before the cutoff.
    old_incidents = select(Incident.id).where(Incident.closed_at < cutoff)
    doomed_docs += session.execute(
        select(Document.id, Document.sha256).where(
            Document.case_id.is_(None), Document.incident_id.in_(old_incidents)
        )
    ).all()
    removed["documents"] += _count(
        session.execute(
            delete(Document).where(
                Document.case_id.is_(None), Document.incident_id.in_(old_incidents)
            ),
            execution_options=opts,
        )
    )
    session.flush()

    doc_root = Path(settings.documents_dir)
    files: list[tuple[str, str, Path]] = []
    for _id, sha in doomed_docs:
        files.append(("document", sha, doc_root / sha[:2] / sha[2:4] / sha))
    for _id, sha, path in doomed_reports:
        files.append(("report", sha, Path(path)))
    unique = {(k, s): p for k, s, p in files}
    removed["files"] = len(unique)
    if unique:
        _unlink_after_commit(session, unique)
    log.info("retention cleanup before %s: %s", cutoff.isoformat(), removed)
    return removed


def _unlink_after_commit(session: Session, files: dict[tuple[str, str], Path]) -> None:
    bind = session.get_bind()

    def unlink(_session: Session) -> None:
        with Session(bind) as check:
            for (kind, sha), path in files.items():
                model = Document if kind == "document" else Report
                still = check.scalar(select(model.id).where(model.sha256 == sha).limit(1))
                if still is not None:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    event.listen(session, "after_commit", unlink, once=True)
