"""The audit chain (Jincheng art. 17, Jilin art. 36: handling must be traceable and auditable)."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.audit import GENESIS, record, verify
from core.models import AuditEvent


def _fill(session: Session, n: int = 5) -> None:
    for i in range(n):
        record(
            session,
            actor="tester",
            action="case.transition",
            object_type="case",
            object_id=i,
            reason=f"step {i} 断网",
            data={"strike": i, "password": "hunter2"},
        )
    session.commit()


def test_chain_links_and_verifies(session: Session) -> None:
    _fill(session)
    events = session.query(AuditEvent).order_by(AuditEvent.id).all()
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert events[0].data["password"] == "***", "secrets never reach the audit log"
    result = verify(session)
    assert result.ok and result.checked == 5


def test_edited_row_is_named(session: Session) -> None:
    _fill(session)
    session.execute(text("UPDATE audit_events SET reason = 'nothing happened' WHERE id = 3"))
    session.commit()
    result = verify(session)
    assert not result.ok and result.first_bad_id == 3


def test_deleted_rows_are_noticed(session: Session) -> None:
    _fill(session)
    session.execute(text("DELETE FROM audit_events WHERE id = 2"))
    session.commit()
    result = verify(session)
    assert not result.ok and result.first_bad_id == 2


def test_deleted_tail_is_noticed(session: Session) -> None:
    _fill(session)
    session.execute(text("DELETE FROM audit_events WHERE id = 5"))
    session.commit()
    result = verify(session)
    assert not result.ok and result.first_bad_id == 5


def test_reordered_rows_are_noticed(session: Session) -> None:
    _fill(session)
    rows = session.execute(
        text("SELECT id, at, reason FROM audit_events WHERE id IN (2, 4) ORDER BY id")
    ).all()
    # swap the content of entries 2 and 4 (their hashes stay where they were)
    for (row_id, _at, _reason), (_oid, at, reason) in zip(rows, reversed(rows), strict=True):
        session.execute(
            text("UPDATE audit_events SET at = :at, reason = :reason WHERE id = :id"),
            {"at": at, "reason": reason, "id": row_id},
        )
    session.commit()
    result = verify(session)
    assert not result.ok and result.first_bad_id == 2


def test_cli_verify_names_the_edited_row(db_url_sqlite: str, tmp_path: Path) -> None:
    """Done-when of issue 2: edit one audit row by hand in SQLite; `audit verify` fails and names it."""
    env = {**os.environ, "EDGEWARDEN_DATABASE_URL": db_url_sqlite}
    cli = [sys.executable, "-m", "core"]
    made = subprocess.run(
        [*cli, "token", "create", "--role", "city_admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout.strip().splitlines()[-1].startswith("ew_")
    subprocess.run(
        [*cli, "token", "create", "--role", "auditor"], env=env, check=True, capture_output=True
    )
    ok = subprocess.run([*cli, "audit", "verify"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "2 entries" in ok.stdout
    path = db_url_sqlite.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_events SET actor = 'someone-else' WHERE id = 1")
    broken = subprocess.run([*cli, "audit", "verify"], env=env, capture_output=True, text=True)
    assert broken.returncode == 1
    assert "entry 1" in broken.stderr
