"""Shared fixtures: real databases (SQLite and PostgreSQL), secrets, artifact directory.

Contract for tests:
- ``db_url``: a fresh database migrated to head, as a SQLAlchemy URL string. Parametrized
  ``sqlite`` / ``postgresql``, so a test that uses it runs against both.
- ``db_url_sqlite`` / ``db_url_pg``: the same for one backend only.
- ``engine`` (``core.db.make_engine(db_url)``, disposed after), ``session`` (an ORM session on it).
- ``pg_server``: the session's PostgreSQL server (``tests/pgserver.PgServer``).
- ``test_output_dir``: a per-test directory under ``test-output/`` for screenshots etc.
- ``EDGEWARDEN_SECRET_KEY`` is a fixed Fernet key for the whole session.

Migrating per test is slow, so each backend migrates one template per session and each test
gets a copy: a file copy for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.pgserver import LocalCluster, PgServer, PgServerError, external_server

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_OUTPUT_ROOT = REPO_ROOT / "test-output"

# A valid Fernet key (urlsafe base64 of 32 bytes) used only by the tests.
TEST_SECRET_KEY = "ZWRnZXdhcmRlbi10ZXN0LWtleS0wMTIzNDU2Nzg5YWI="
SECRET_KEY_ENV = "EDGEWARDEN_SECRET_KEY"

PG_TEMPLATE = "ew_template"
SQLITE_NAME = "edgewarden.db"

# Fixtures that need PostgreSQL; tests using them get the `postgres` marker.
_PG_FIXTURES = {"pg_server", "db_url_pg"}


def pytest_configure(config: pytest.Config) -> None:
    # Set before collection so modules that read settings at import time see the test key.
    os.environ[SECRET_KEY_ENV] = TEST_SECRET_KEY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session", autouse=True)
def _test_secret_key() -> Iterator[str]:
    """The fixed test key in EDGEWARDEN_SECRET_KEY; a test may override it with monkeypatch."""
    previous = os.environ.get(SECRET_KEY_ENV)
    os.environ[SECRET_KEY_ENV] = TEST_SECRET_KEY
    yield TEST_SECRET_KEY
    if previous is None:
        os.environ.pop(SECRET_KEY_ENV, None)
    else:
        os.environ[SECRET_KEY_ENV] = previous


@pytest.fixture
def test_output_dir(request: pytest.FixtureRequest) -> Path:
    """``test-output/<module>/<test>/`` at the repo root, created empty for this test."""
    node = request.node
    module = Path(str(node.path)).stem if getattr(node, "path", None) else "misc"
    path = TEST_OUTPUT_ROOT / module / re.sub(r"[^\w.\[\]-]+", "_", node.name)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server: EDGEWARDEN_TEST_PG_URL, or a throwaway PostgreSQL 15.

    Fails (never skips) when no server can be had: the PostgreSQL leg is required.
    """
    cluster: LocalCluster | None = None
    server: PgServer | None = None
    error: str | None = None
    try:
        server = external_server()
        if server is None:
            cluster = LocalCluster()
            server = cluster.start()
    except PgServerError as exc:
        error = str(exc)
    if error is not None:
        pytest.fail(error, pytrace=False)  # outside `except`: no chained traceback
    assert server is not None
    try:
        yield server
    finally:
        server.close()
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="session")
def _pg_template(pg_server: PgServer) -> Iterator[str]:
    """A database migrated to head once per session, sealed for cloning."""
    from core.migrate import upgrade

    pg_server.drop_template(PG_TEMPLATE)
    upgrade(pg_server.create_database(PG_TEMPLATE))
    pg_server.seal_template(PG_TEMPLATE)
    yield PG_TEMPLATE
    pg_server.drop_template(PG_TEMPLATE)


_pg_db_numbers = itertools.count(1)


@pytest.fixture
def db_url_pg(pg_server: PgServer, _pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head (cloned from the template), dropped after."""
    name = f"ew_{next(_pg_db_numbers)}"
    url = pg_server.create_database(name, template=_pg_template)
    yield url
    pg_server.drop_database(name)


# --- SQLite -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session."""
    from core.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / SQLITE_NAME
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_url_sqlite(tmp_path: Path, _sqlite_template: Path) -> str:
    """A fresh SQLite file in tmp_path migrated to head (a copy of the template)."""
    path = tmp_path / SQLITE_NAME
    shutil.copyfile(_sqlite_template, path)
    # A WAL that was not checkpointed holds committed pages: copy it too (-shm is rebuilt).
    wal = _sqlite_template.with_name(SQLITE_NAME + "-wal")
    if wal.exists():
        shutil.copyfile(wal, path.with_name(SQLITE_NAME + "-wal"))
    return f"sqlite:///{path}"


# --- both backends ------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database migrated to head; the test runs once per backend."""
    fixture = "db_url_sqlite" if request.param == "sqlite" else "db_url_pg"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """``core.db.make_engine(db_url)``, disposed after the test."""
    from core.db import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """An ORM session on ``engine``, closed after the test."""
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        yield s
