"""Documents, reports, packs and statistics through the REST API and the CLI."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.app import create_app
from api.reports.cli import register
from core.models import AuditEvent, Document, Role
from core.settings import get_settings
from core.tokens import create_token
from tests.reports.story import Story, pdf_bytes, play

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("EDGEWARDEN_DOCUMENTS_DIR", str(tmp_path / "documents"))
    monkeypatch.setenv("EDGEWARDEN_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("EDGEWARDEN_DOCUMENT_MAX_BYTES", "4096")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _tokens(session: Session) -> dict[str, str]:
    out = {}
    for name, role, counties in (
        ("admin", Role.CITY_ADMIN, []),
        ("county", Role.COUNTY_OPERATOR, ["140502"]),
        ("other", Role.COUNTY_OPERATOR, ["220102"]),
        ("viewer", Role.VIEWER, []),
    ):
        _, tok = create_token(session, role=role, counties=counties)
        out[name] = tok
    session.commit()
    return out


def test_documents_api(session: Session, db_url: str, tmp_path: Path, env: None) -> None:
    story: Story = play(session, tmp_path, db_url)
    tokens = _tokens(session)
    client = TestClient(create_app(db_url))
    case = story.cases[2]
    url = f"/api/v1/cases/{case.id}/documents"

    def post(token: str, data: bytes, name: str = "a.pdf", kind: str = "confirmation") -> object:
        return client.post(
            url,
            headers={"Authorization": f"Bearer {tokens[token]}"},
            files={"file": (name, data, "application/pdf")},
            data={"kind": kind, "note": "市局确认函"},
        )

    good = post("county", PNG, name="确认函.png")
    assert good.status_code == 201, good.text
    body = good.json()
    assert body["content_type"] == "image/png" and body["uploaded_by"].startswith("county")
    again = post("county", PNG, name="renamed.png")
    assert again.status_code == 409 and str(body["id"]) in again.json()["detail"]
    as_other_kind = post("admin", PNG, kind="other")
    assert as_other_kind.status_code == 201 and as_other_kind.json()["sha256"] == body["sha256"]

    fake = post("county", b"MZ\x90\x00 this is an .exe named .pdf", name="report.pdf")
    assert fake.status_code == 415 and "not a PDF, DOCX, PNG or JPEG" in fake.json()["detail"]
    big = post("county", pdf_bytes("x" * 5000))
    assert big.status_code == 413 and "4096" in big.json()["detail"]
    kind = post("county", pdf_bytes(), kind="selfie")
    assert kind.status_code == 422 and "rectification_report" in str(kind.json())
    assert post("viewer", pdf_bytes()).status_code == 403
    assert post("other", pdf_bytes()).status_code == 404

    hdr = {"Authorization": f"Bearer {tokens['county']}"}
    listing = client.get(url, headers=hdr).json()["items"]
    assert [d["kind"] for d in listing][-2:] == ["confirmation", "other"]
    meta = client.get(f"/api/v1/documents/{body['id']}", headers=hdr)
    assert meta.json()["sha256"] == body["sha256"]
    content = client.get(f"/api/v1/documents/{body['id']}/content", headers=hdr)
    assert content.content == PNG and content.headers["content-type"] == "image/png"
    other = {"Authorization": f"Bearer {tokens['other']}"}
    assert client.get(f"/api/v1/documents/{body['id']}", headers=other).status_code == 404
    assert client.get(url, headers=other).status_code == 404
    session.expire_all()
    n = session.scalar(
        select(AuditEvent.id).where(
            AuditEvent.action == "document.uploaded", AuditEvent.object_id == str(body["id"])
        )
    )
    assert n is not None
    # a blob changed on disk is not served
    doc = session.get(Document, body["id"])
    assert doc is not None
    Path(doc.storage_path).chmod(0o644)
    Path(doc.storage_path).write_bytes(PNG + b"x")
    assert client.get(f"/api/v1/documents/{body['id']}/content", headers=hdr).status_code == 409


def test_reports_pack_statistics_api(
    sqlite_session: Session, db_url_sqlite: str, tmp_path: Path, env: None
) -> None:
    story = play(sqlite_session, tmp_path, db_url_sqlite)
    tokens = _tokens(sqlite_session)
    client = TestClient(create_app(db_url_sqlite))
    case = story.cases[2]
    hdr = {"Authorization": f"Bearer {tokens['county']}"}
    md = client.get(f"/api/v1/cases/{case.id}/report?format=md", headers=hdr)
    assert md.status_code == 200 and "事件起因" in md.text and md.headers["x-report-id"]
    pdf = client.get(f"/api/v1/cases/{case.id}/report?format=pdf", headers=hdr)
    assert pdf.content.startswith(b"%PDF-")
    assert client.get(f"/api/v1/cases/{case.id}/report?format=rtf", headers=hdr).status_code == 422
    other = {"Authorization": f"Bearer {tokens['other']}"}
    assert client.get(f"/api/v1/cases/{case.id}/report", headers=other).status_code == 404
    pack = client.get(f"/api/v1/cases/{case.id}/pack", headers=hdr)
    assert (
        pack.status_code == 200
        and "manifest.json" in zipfile.ZipFile(io.BytesIO(pack.content)).namelist()
    )

    stats = client.get("/api/v1/statistics?month=2025-03", headers=hdr).json()
    assert [r["county_code"] for r in stats] == ["140502"] and stats[0]["violations"] == 3
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    every = client.get("/api/v1/statistics?month=2025-03", headers=admin).json()
    assert {r["county_code"] for r in every} >= {"140502", "220102", ""}
    csv_r = client.get("/api/v1/statistics?month=2025-03&format=csv", headers=hdr)
    assert csv_r.headers["content-type"].startswith(
        "text/csv"
    ) and "140502" in csv_r.content.decode("utf-8-sig")
    xlsx = client.get("/api/v1/statistics?month=2025-03&format=xlsx", headers=hdr)
    assert xlsx.content.startswith(b"PK")
    assert client.get("/api/v1/statistics?month=2025-3", headers=hdr).status_code == 422


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """edgewarden (test harness)"""

    register(app)
    return app


def test_cli_commands(
    sqlite_session: Session,
    db_url_sqlite: str,
    tmp_path: Path,
    env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    story = play(sqlite_session, tmp_path, db_url_sqlite)
    monkeypatch.setenv("EDGEWARDEN_DATABASE_URL", db_url_sqlite)
    get_settings.cache_clear()
    runner = CliRunner()
    app = _app()
    case = story.cases[2]
    out = tmp_path / "out"
    out.mkdir()

    pdf = out / "确认.pdf"
    pdf.write_bytes(pdf_bytes("ok"))
    r = runner.invoke(app, ["document", "upload", str(case.id), str(pdf), "--kind", "confirmation"])
    assert r.exit_code == 0, r.output
    assert "application/pdf" in r.output
    txt = out / "x.pdf"
    txt.write_text("plain text")
    r = runner.invoke(app, ["document", "upload", str(case.id), str(txt), "--kind", "confirmation"])
    assert r.exit_code != 0

    r = runner.invoke(app, ["report", str(case.id), "--format", "md"])
    assert r.exit_code == 0 and "整改措施" in r.stdout
    docx = out / "r.docx"
    r = runner.invoke(app, ["report", str(case.id), "--format", "docx", "-o", str(docx)])
    assert r.exit_code == 0 and docx.read_bytes().startswith(b"PK")

    zip_path = out / "pack.zip"
    r = runner.invoke(app, ["pack", str(case.id), "-o", str(zip_path)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pack", "verify", str(zip_path)])
    assert r.exit_code == 0 and "pack OK" in r.stdout
    zf = zipfile.ZipFile(zip_path)
    forged = out / "forged.zip"
    with zipfile.ZipFile(forged, "w") as dst:
        for info in zf.infolist():
            body = zf.read(info.filename)
            dst.writestr(
                info.filename, body + b" " if info.filename == "report/summary.md" else body
            )
    r = runner.invoke(app, ["pack", "verify", str(forged)])
    assert r.exit_code == 1 and "report/summary.md" in r.output

    r = runner.invoke(app, ["stats", "--month", "2025-03", "--format", "csv"])
    assert r.exit_code == 0 and "140502" in r.stdout
    xlsx = out / "s.xlsx"
    r = runner.invoke(app, ["stats", "--month", "2025-03", "--format", "xlsx", "-o", str(xlsx)])
    assert r.exit_code == 0 and xlsx.read_bytes().startswith(b"PK")
