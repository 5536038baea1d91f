"""Inventory import/export: all-or-nothing, line-numbered reasons, round trips, sealed secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import verify
from core.errors import ConfigError, ValidationFailed
from core.inventory import export_document, export_text, import_file
from core.models import Device, Institution, IpAllocation, Link

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "lab" / "sample" / "inventory-small.yaml"


def _counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.scalar(select(func.count()).select_from(m)) or 0
        for m in (Institution, Link, IpAllocation, Device)
    )


def test_sample_round_trips_yaml_and_csv(session: Session, tmp_path: Path) -> None:
    result = import_file(session, SMALL, actor="test")
    session.commit()
    assert result.created["institutions"] == 60
    first = export_document(session)
    for fmt in ("yaml", "csv"):
        path = tmp_path / f"export.{fmt}"
        path.write_text(export_text(session, fmt), encoding="utf-8")
        again = import_file(session, path, actor="test")
        session.commit()
        assert again.created == {} and again.updated == {}, f"{fmt} re-import changed rows"
    assert export_document(session) == first
    assert verify(session).ok


def test_export_into_fresh_database_is_identical(
    session: Session, db_url_sqlite: str, tmp_path: Path
) -> None:
    from core.db import make_engine

    import_file(session, SMALL, actor="test")
    session.commit()
    path = tmp_path / "inv.csv"
    path.write_text(export_text(session, "csv"), encoding="utf-8")
    other = Session(make_engine(db_url_sqlite))
    import_file(other, path, actor="test")
    other.commit()

    def strip_secrets(doc: dict) -> dict:
        for dev in doc["devices"]:
            dev.pop("snmp", None)
            dev.pop("ssh", None)
        return doc

    assert strip_secrets(export_document(other)) == strip_secrets(export_document(session))
    other.close()


def test_secrets_are_sealed_and_never_exported_in_clear(session: Session) -> None:
    import_file(session, SMALL, actor="test")
    session.commit()
    clear = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    passwords = {d["ssh"]["password"] for d in clear["devices"]}
    communities = {d["snmp"].get("community") for d in clear["devices"]} - {None}
    stored = session.scalars(select(Device)).all()
    for dev in stored:
        assert dev.ssh_password_enc not in passwords
        assert dev.snmp_version.value == "v3" or dev.snmp_community_enc not in communities
    text = export_text(session, "yaml") + export_text(session, "csv")
    assert not any(p in text for p in passwords)
    assert "enc:" in text


BAD_CASES = [
    (
        "unknown county",
        "institutions:\n  - {code: H14059900001, name: X, kind: hospital, county: '149999'}\n",
        2,
        "unknown county 149999",
    ),
    (
        "malformed prefix",
        "ip_allocations:\n  - {institution: H14050200001, prefix: 10.1.2.3/24}\n",
        2,
        "host bits set",
    ),
    (
        "overlapping prefix",
        "ip_allocations:\n  - {institution: H14050200001, prefix: 10.145.0.0/24}\n",
        2,
        "overlaps",
    ),
    (
        "ip of two institutions",
        "ip_allocations:\n  - {institution: H14050200002, prefix: 10.145.0.0/28}\n",
        2,
        "already allocated to H14050200001",
    ),
    (
        "unknown device type",
        "devices:\n  - {name: x, mgmt_address: 127.0.0.1, device_type: nokia_x, role: lns}\n",
        2,
        "unknown device type",
    ),
    (
        "duplicate code",
        "institutions:\n  - {code: H14050299901, name: A, kind: hospital, county: '140502'}\n"
        "  - {code: H14050299901, name: B, kind: hospital, county: '140502'}\n",
        3,
        "duplicate",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "line", "reason"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_one_bad_row_refuses_the_whole_file(
    session: Session, tmp_path: Path, case: str, body: str, line: int, reason: str
) -> None:
    import_file(session, SMALL, actor="test")
    session.commit()
    before = _counts(session)
    good_row = "  - {code: H14050299999, name: 新诊所, kind: hospital, county: '140502'}\n"
    if body.startswith("institutions:"):
        text = body + good_row
    else:
        text = "institutions:\n" + good_row + body
        line += 2
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationFailed) as exc:
        import_file(session, path, actor="test")
    session.rollback()
    assert any(p.startswith(f"{path}:{line}:") and reason in p for p in exc.value.problems), (
        exc.value.problems
    )
    assert _counts(session) == before
    assert session.scalar(select(Institution).where(Institution.code == "H14050299999")) is None


def test_csv_bad_row_names_its_line(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "type,code,name,parent,policy,kind,county\n"
        "county,140500,晋城市,,jincheng,,\n"
        "county,140502,城区,140500,,,\n"
        "institution,H14050200001,医院,,,hospital,140502\n"
        "institution,H1405,坏代码,,,hospital,140502\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationFailed) as exc:
        import_file(session, path, actor="test")
    assert any(p.startswith(f"{path}:5:") for p in exc.value.problems), exc.value.problems
    session.rollback()
    assert _counts(session) == (0, 0, 0, 0)


def test_missing_secret_key_is_one_clear_error(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings

    monkeypatch.delenv("EDGEWARDEN_SECRET_KEY")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="EDGEWARDEN_SECRET_KEY is not set"):
            import_file(session, SMALL, actor="test")
    finally:
        get_settings.cache_clear()


def test_cli_refuses_bad_file_without_traceback(db_url_sqlite: str, tmp_path: Path) -> None:
    env = {**os.environ, "EDGEWARDEN_DATABASE_URL": db_url_sqlite}
    bad = tmp_path / "bad.yaml"
    bad.write_text("counties:\n  - {code: '12', name: x}\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "core", "inventory", "import", str(bad)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert f"{bad}:2:" in run.stderr and "Traceback" not in run.stderr
