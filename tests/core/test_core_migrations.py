"""The ORM models and the Alembic migrations describe the same schema, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from core import migrate
from core.db import make_engine
from core.models import Base


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    assert migrate.current_revision(db_url) == migrate.head_revision()
    migrate.downgrade(db_url, "base")
    engine = make_engine(db_url)
    leftover = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert leftover == set()
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
