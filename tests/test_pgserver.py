"""The PostgreSQL test server is real PostgreSQL 15 and per-test databases do not leak.

Raw SQLAlchemy and psycopg only: these tests check the fixture machinery itself, so they must
not depend on the project's own database code.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from tests.pgserver import PG_MAJOR, LocalCluster, PgServer, PgServerError, pid_running


def _scalar(url: str, query: str) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar_one()
    finally:
        engine.dispose()


def _make_template(pg_server: PgServer, name: str) -> None:
    """A small template database holding one table with one row."""
    pg_server.drop_template(name)
    engine = create_engine(pg_server.create_database(name))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE institution (code text PRIMARY KEY, name text)"))
            conn.execute(text("INSERT INTO institution VALUES ('H14050200001', '晋城市人民医院')"))
    finally:
        engine.dispose()
    pg_server.seal_template(name)


def test_server_is_postgresql_15(pg_server: PgServer) -> None:
    assert pg_server.base_url.startswith("postgresql+psycopg://postgres@")
    assert pg_server.base_url.endswith(f":{pg_server.port}/")
    version = str(_scalar(pg_server.url("postgres"), "SELECT version()"))
    assert version.startswith(f"PostgreSQL {PG_MAJOR}."), version
    assert pg_server.server_version_num() // 10000 == PG_MAJOR
    if not pg_server.managed:
        return  # EDGEWARDEN_TEST_PG_URL: its configuration is not ours
    # Loopback only, and the speed settings are in effect.
    url = pg_server.url("postgres")
    assert _scalar(url, "SHOW listen_addresses") == "127.0.0.1"
    assert _scalar(url, "SHOW fsync") == "off"
    assert _scalar(url, "SHOW synchronous_commit") == "off"
    assert _scalar(url, "SHOW server_encoding") == "UTF8"


def test_per_test_databases_are_isolated(pg_server: PgServer) -> None:
    _make_template(pg_server, "ew_iso_template")
    try:
        url_a = pg_server.create_database("ew_iso_a", template="ew_iso_template")
        url_b = pg_server.create_database("ew_iso_b", template="ew_iso_template")
        assert url_a != url_b
        # Both start as copies of the template ...
        assert _scalar(url_a, "SELECT name FROM institution") == "晋城市人民医院"
        assert _scalar(url_b, "SELECT count(*) FROM institution") == 1
        # ... and a write in one is invisible in the other and in the template.
        engine_a = create_engine(url_a)
        with engine_a.begin() as conn:
            conn.execute(text("INSERT INTO institution VALUES ('P14050200001', 'pharmacy')"))
            conn.execute(text("CREATE TABLE only_in_a (id int)"))
        engine_a.dispose()
        assert _scalar(url_a, "SELECT count(*) FROM institution") == 2
        assert _scalar(url_b, "SELECT count(*) FROM institution") == 1
        assert _scalar(url_b, "SELECT to_regclass('only_in_a') IS NULL") is True
        url_c = pg_server.create_database("ew_iso_c", template="ew_iso_template")
        assert _scalar(url_c, "SELECT count(*) FROM institution") == 1
    finally:
        for name in ("ew_iso_a", "ew_iso_b", "ew_iso_c"):
            pg_server.drop_database(name)
        pg_server.drop_template("ew_iso_template")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        pg_server.connect("ew_iso_a").close()


def test_leftover_connections_do_not_block_cloning_or_dropping(pg_server: PgServer) -> None:
    """A test that forgets to close its connections must not break the next test's database."""
    pg_server.drop_template("ew_leak_template")
    pg_server.create_database("ew_leak_template")
    leaked_template = pg_server.connect("ew_leak_template")
    try:
        pg_server.seal_template("ew_leak_template")
        pg_server.create_database("ew_leak_clone", template="ew_leak_template")
        leaked_clone = pg_server.connect("ew_leak_clone")
        pg_server.drop_database("ew_leak_clone")
        with pytest.raises(psycopg.OperationalError):
            leaked_clone.execute("SELECT 1")
        # Sealed: nobody can connect to the template any more.
        with pytest.raises(psycopg.OperationalError, match="not currently accepting connections"):
            pg_server.connect("ew_leak_template")
    finally:
        leaked_template.close()
        pg_server.drop_template("ew_leak_template")


def test_cloning_a_database_is_fast(pg_server: PgServer) -> None:
    """Per-test databases must stay cheap: the suite creates one for every db_url test."""
    _make_template(pg_server, "ew_speed_template")
    n = 20
    try:
        start = time.perf_counter()
        for i in range(n):
            pg_server.create_database(f"ew_speed_{i}", template="ew_speed_template")
            pg_server.drop_database(f"ew_speed_{i}")
        per_db_ms = (time.perf_counter() - start) / n * 1000
    finally:
        pg_server.drop_template("ew_speed_template")
    print(f"create+drop from template: {per_db_ms:.1f} ms per database")
    assert per_db_ms < 1000, f"{per_db_ms:.0f} ms per database"


def test_missing_binaries_fail_with_a_clear_message(tmp_path: Path) -> None:
    cluster = LocalCluster(bin_dir=tmp_path / "no-postgres")
    with pytest.raises(PgServerError, match=r"PostgreSQL 15 is not installed.*initdb is missing"):
        cluster.start()
    assert cluster.root is None


def test_cluster_directory_is_removed_after_stop() -> None:
    cluster = LocalCluster()
    server = cluster.start()
    root = cluster.root
    assert root is not None and (root / "data" / "PG_VERSION").read_text().strip() == "15"
    pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
    assert _scalar(server.url("postgres"), "SELECT 1") == 1
    assert pid_running(pid)
    cluster.stop()
    assert not root.exists()
    assert not pid_running(pid)
