"""The 24-hour summary report of a three-strike case in all four formats, read back with
independent tools (pdftotext, python-docx), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pytest
from docx import Document as Docx
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.reports.render import generate
from core.audit import verify
from core.models import AuditEvent, Deadline, Report
from tests.reports.story import (
    INTERNET_IP,
    REMEDIATION,
    REPORT_AT,
    TERMINAL_IP,
    TERMINAL_MAC,
    play,
)

HEADINGS = ("事件起因", "处置过程", "影响范围", "整改措施")


def _docx_text(data: bytes) -> str:
    doc = Docx(io.BytesIO(data))
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    return "\n".join(parts)


def _pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    )
    fonts = subprocess.run(["pdffonts", str(path)], check=True, capture_output=True, text=True)
    assert "Noto-Sans-CJK" in fonts.stdout  # CJK glyphs embedded, no tofu
    return out.stdout


def test_report_reads_correctly_in_all_formats(
    session: Session, db_url: str, tmp_path: Path
) -> None:
    story = play(session, tmp_path, db_url)
    case = story.cases[2]
    texts: dict[str, str] = {}
    for fmt in ("md", "html", "pdf", "docx"):
        data, report = generate(
            session, case.id, fmt, actor="county-140502", settings=story.settings, now=REPORT_AT
        )
        assert report.sha256 == hashlib.sha256(data).hexdigest()
        assert Path(report.path).read_bytes() == data
        if fmt == "pdf":
            assert data.startswith(b"%PDF-")
            texts[fmt] = _pdf_text(data, tmp_path)
        elif fmt == "docx":
            texts[fmt] = _docx_text(data)
        else:
            texts[fmt] = data.decode("utf-8")
    session.commit()

    for fmt, text in texts.items():
        flat = "".join(text.split())
        for heading in HEADINGS:
            assert heading in flat, (fmt, heading)
        assert story.institution.code in flat, fmt
        assert "第3次" in flat, fmt
        assert "断网时长合计：1天2小时" in flat, fmt  # strike 3's cut: 1 day 2 hours
        assert TERMINAL_IP in flat and INTERNET_IP in flat, fmt
        assert TERMINAL_MAC in flat, fmt
        assert "整改报告-3.pdf" in flat, fmt
        assert "".join(REMEDIATION.split()) in flat, fmt
        assert "已按时完成" in flat, fmt  # the report met its 24-hour deadline
        assert f"案件{case.id}" in flat or f"案件编号{case.id}" in flat, fmt
        assert "已执行并核验" in flat, fmt  # enforcement commands sent and verified
        assert "主动探测命中" in flat, fmt  # strike 3 came from a probe hit
    # the HTML escapes what people typed
    assert "<script" not in texts["html"]

    reports = session.scalars(select(Report).where(Report.case_id == case.id)).all()
    assert sorted(r.format for r in reports) == ["docx", "html", "md", "pdf"]
    deadline = session.scalars(
        select(Deadline).where(Deadline.case_id == case.id, Deadline.kind == "summary_report")
    ).one()
    assert deadline.met_at is not None and deadline.met_at == REPORT_AT
    actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("report.generated") == 4 and "deadline.met" in actions
    assert verify(session).ok


def test_unknown_format_and_case_are_refused(
    sqlite_session: Session, db_url_sqlite: str, tmp_path: Path
) -> None:
    from core.errors import NotFound, ValidationFailed

    story = play(sqlite_session, tmp_path, db_url_sqlite)
    with pytest.raises(ValidationFailed, match="unknown report format"):
        generate(sqlite_session, story.cases[0].id, "rtf", actor="x", settings=story.settings)
    with pytest.raises(NotFound):
        generate(sqlite_session, 999_999, "md", actor="x", settings=story.settings)


def test_overdue_report_is_marked(
    sqlite_session: Session, db_url_sqlite: str, tmp_path: Path
) -> None:
    from datetime import timedelta

    story = play(sqlite_session, tmp_path, db_url_sqlite)
    case = story.cases[0]  # handling ended at T0+2h; due T0+26h
    data, _ = generate(
        sqlite_session,
        case.id,
        "md",
        actor="auditor-1",
        settings=story.settings,
        meets_deadline=False,
        now=REPORT_AT,
    )
    assert "已逾期" in data.decode()
    data, _ = generate(
        sqlite_session,
        case.id,
        "md",
        actor="county",
        settings=story.settings,
        now=REPORT_AT + timedelta(minutes=1),
    )
    assert "已完成（逾期）" in data.decode()
