"""The evidence pack verifies offline (also with coreutils' sha256sum), and tampering with a
file, the manifest or an audit entry is detected; monthly statistics per county."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

from openpyxl import load_workbook
from sqlalchemy.orm import Session

from api.reports.pack import build_pack, pack_manifest_recorded, verify_pack
from api.reports.stats import monthly, to_csv, to_xlsx
from core.actors import Actor
from core.audit import verify
from core.models import Role
from tests.reports.story import REPORT_AT, play


def _rewrite(data: bytes, name: str, new: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, new if info.filename == name else src.read(info.filename))
    return out.getvalue()


def test_pack_verifies_and_tampering_is_detected(
    session: Session, db_url: str, tmp_path: Path
) -> None:
    story = play(session, tmp_path, db_url)
    case = story.cases[2]
    data = build_pack(
        session, case.id, actor="city_admin-1", settings=story.settings, now=REPORT_AT
    )
    session.commit()
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert {
        "report/summary.md",
        "report/summary.pdf",
        "report/summary.html",
        "manifest.json",
        "manifest.sha256",
        "audit/entries.jsonl",
        "evidence/detections.json",
        "evidence/actions.json",
    } <= names
    assert any(
        n.startswith("documents/") and n.endswith("-rectification_report.pdf") for n in names
    )
    assert any(n.startswith("transcripts/action-") for n in names)

    check = verify_pack(data)
    assert check.ok, check.problems
    assert check.audit_entries >= 5 and check.files == len(names) - 3
    assert pack_manifest_recorded(session, case.id, check.manifest_sha256)
    entries = [
        json.loads(x)
        for x in zipfile.ZipFile(io.BytesIO(data)).read("audit/entries.jsonl").splitlines()
    ]
    assert {"case.open", "enforcement.verified", "document.uploaded", "report.generated"} <= {
        e["action"] for e in entries
    }

    # an auditor without the service: sha256sum -c
    root = tmp_path / "unpacked"
    zipfile.ZipFile(io.BytesIO(data)).extractall(root)
    ok = subprocess.run(["sha256sum", "-c", "--quiet", "manifest.sha256"], cwd=root)
    assert ok.returncode == 0

    doc = next(n for n in names if n.startswith("documents/"))
    tampered = verify_pack(_rewrite(data, doc, b"%PDF-1.4 forged"))
    assert not tampered.ok and any(doc in p and "altered" in p for p in tampered.problems)
    (root / doc).write_bytes(b"forged")
    bad = subprocess.run(
        ["sha256sum", "-c", "--quiet", "manifest.sha256"], cwd=root, capture_output=True
    )
    assert bad.returncode != 0

    lines = zipfile.ZipFile(io.BytesIO(data)).read("audit/entries.jsonl").decode().splitlines()
    edited = json.loads(lines[0])
    edited["reason"] = "nothing happened"
    lines[0] = json.dumps(edited, ensure_ascii=False, sort_keys=True)
    forged = _rewrite(data, "audit/entries.jsonl", ("\n".join(lines) + "\n").encode())
    # even with a manifest rewritten to match, the audit hash and the service's record catch it
    check2 = verify_pack(forged)
    assert not check2.ok and any("hash does not match" in p for p in check2.problems)

    added = io.BytesIO(data)
    with zipfile.ZipFile(added, "a") as zf:
        zf.writestr("documents/extra.pdf", b"%PDF-1.4 extra")
    assert any("not listed" in p for p in verify_pack(added.getvalue()).problems)
    assert not verify_pack(b"not a zip").ok
    assert verify(session).ok


def test_monthly_statistics_per_county(session: Session, db_url: str, tmp_path: Path) -> None:
    story = play(session, tmp_path, db_url)
    admin = Actor("city_admin-1", Role.CITY_ADMIN)
    march = {r.county_code: r for r in monthly(session, "2025-03", admin, now=REPORT_AT)}
    row = march["140502"]
    assert (row.violations, row.strikes, row.cuts) == (3, 3, 3)
    assert row.reconnections == 2  # the third restore was on 1 April (Beijing time)
    assert (row.reports_due, row.overdue_reports) == (2, 2)  # cases 1 and 2: no report made
    assert march[""].violations == 3 and march["220102"].violations == 0
    april = {r.county_code: r for r in monthly(session, "2025-04", admin, now=REPORT_AT)}
    assert april["140502"].reconnections == 1 and april["140502"].reports_due == 1
    assert april["140502"].overdue_reports == 0  # not yet due at REPORT_AT

    other = Actor("county-220102", Role.COUNTY_OPERATOR, frozenset({"220102"}))
    rows = monthly(session, "2025-03", other, now=REPORT_AT)
    assert [r.county_code for r in rows] == ["220102"] and rows[0].violations == 0

    csv_text = to_csv(monthly(session, "2025-03", admin, now=REPORT_AT)).decode("utf-8-sig")
    assert csv_text.splitlines()[0].startswith("县区代码,县区,月份,违规案件数")
    assert "140502,城区,2025-03,3,3,3,2,2,2" in csv_text
    wb = load_workbook(io.BytesIO(to_xlsx(list(march.values()))))
    values = [[c.value for c in r] for r in wb.active.iter_rows()]
    assert ["140502", "城区", "2025-03", 3, 3, 3, 2, 2, 2] in values
    assert story.institution.county.code == "140502"
