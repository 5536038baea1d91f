"""Retention cleanup: old data goes, what an open case needs stays, the audit chain verifies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.reports.render import generate
from core.audit import verify
from core.documents import add_document
from core.models import (
    ArpEntry,
    AuditEvent,
    Case,
    CaseEvent,
    Detection,
    Document,
    IdempotencyRecord,
    Observation,
    ObservationSource,
    Report,
)
from core.retention import cleanup
from tests.reports.story import pdf_bytes, play


def _n(session: Session, model: type, *where: object) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_cleanup_keeps_open_cases_and_audit(session: Session, db_url: str, tmp_path: Path) -> None:
    story = play(session, tmp_path, db_url)  # three closed cases in March 2025
    closed = story.cases[0]
    _, rep = generate(session, closed.id, "md", actor="county", settings=story.settings)
    closed_doc = session.scalars(select(Document).where(Document.case_id == closed.id)).one()
    doc_path, rep_path = Path(closed_doc.storage_path), Path(rep.path)
    # an open case at another institution, with old evidence
    inst2 = story.world.institution()
    old = closed.opened_at - timedelta(days=30)
    obs = Observation(
        key="open:1",
        source=ObservationSource.NETFLOW,
        kind="outbound_internet",
        institution_id=inst2.id,
        src_addr="10.9.9.9",
        first_seen=old,
        last_seen=old,
    )
    stray = Observation(
        key="stray:1",
        source=ObservationSource.NETFLOW,
        kind="outbound_internet",
        institution_id=None,
        src_addr="10.8.8.8",
        first_seen=old,
        last_seen=old,
    )
    session.add_all([obs, stray])
    session.flush()
    det = story.world.find(inst2, at=old)
    assert det is not None
    det.observation_id = obs.id
    open_case_id = det.case_id
    open_doc = add_document(
        session,
        case=session.get(Case, open_case_id),
        kind="written_explanation",
        filename="e.pdf",  # type: ignore[arg-type]
        data=pdf_bytes("open"),
        actor="t",
        settings=story.settings,
        allowed_kinds=["written_explanation"],
    )
    session.add_all(
        [
            ArpEntry(
                device_id=story.world.device.id,
                if_index=1,
                ip="10.7.7.7",
                mac="00:00:00:00:00:07",  # type: ignore[union-attr]
                first_seen=old,
                last_seen=old,
                active=False,
            ),
            ArpEntry(
                device_id=story.world.device.id,
                if_index=1,
                ip="10.7.7.8",
                mac="00:00:00:00:00:08",  # type: ignore[union-attr]
                first_seen=old,
                last_seen=old,
                active=True,
            ),
            IdempotencyRecord(
                actor="a", key="k", method="POST", path="/x", request_hash="0" * 64, created_at=old
            ),
        ]
    )
    session.commit()
    audit_before = _n(session, AuditEvent)

    # within the period: nothing goes
    soon = closed.closed_at + timedelta(days=100)  # type: ignore[operator]
    assert sum(cleanup(session, settings=story.settings, now=soon).values()) == 0
    session.commit()

    later = story.cases[2].closed_at + timedelta(days=story.settings.retention_days + 1)  # type: ignore[operator]
    removed = cleanup(session, settings=story.settings, now=later)
    session.commit()
    assert removed["documents"] == 3 and removed["reports"] == 1 and removed["detections"] == 3
    assert removed["observations"] == 4  # three of the closed cases and the stray one
    assert removed["arp_entries"] == 1 and removed["idempotency_records"] == 1
    assert _n(session, Document, Document.case_id == closed.id) == 0
    assert not doc_path.exists() and not rep_path.exists()
    # the open case keeps everything
    assert _n(session, Detection, Detection.case_id == open_case_id) == 1
    assert _n(session, Observation, Observation.id == obs.id) == 1
    assert _n(session, Document, Document.id == open_doc.id) == 1
    assert Path(open_doc.storage_path).exists()
    assert _n(session, ArpEntry, ArpEntry.active.is_(True)) >= 1
    # case history stays (statistics), detections unlinked; audit kept whole and verifying
    assert _n(session, CaseEvent, CaseEvent.case_id == closed.id) > 0
    assert _n(session, Report, Report.case_id == closed.id) == 0
    assert _n(session, AuditEvent) == audit_before
    assert verify(session).ok
