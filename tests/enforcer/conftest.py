"""Fixtures for the enforcer tests: a World on either backend, or on SQLite only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from core.db import make_engine
from tests.enforcer.world import World


def _world(url: str) -> Iterator[World]:
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        yield World.build(session, url)
    engine.dispose()


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    """SQLite and PostgreSQL."""
    yield from _world(db_url)


@pytest.fixture
def world_sqlite(db_url_sqlite: str) -> Iterator[World]:
    """SQLite only (device tests: the database is not what they exercise)."""
    yield from _world(db_url_sqlite)
