"""Alembic: ``upgrade head`` builds the schema from nothing, and the tables match it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from limner.store import Base, Database
from pg import PG_ENV, postgres_schema


def check(url: str) -> None:
    db = Database(url)
    db.migrate()
    db.migrate()  # a second run is a no-op
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    db.close()
    assert diff == [], f"the tables drifted from the migrations: {diff}"
    assert {"spaces", "api_keys", "deployments", "subscriptions", "transactions"} <= tables
    assert "explanations" in tables


def test_sqlite_upgrade_head_matches_tables(tmp_path: Path) -> None:
    check(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgresql_upgrade_head_matches_tables() -> None:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    with postgres_schema(base) as url:
        check(url)
