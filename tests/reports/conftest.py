"""Fixtures for the report tests: a session on the SQLite-only database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from core.db import make_engine


@pytest.fixture
def sqlite_session(db_url_sqlite: str) -> Iterator[Session]:
    """An ORM session on ``db_url_sqlite`` (for tests that need one backend only)."""
    eng = make_engine(db_url_sqlite)
    with Session(eng) as s:
        yield s
    eng.dispose()
