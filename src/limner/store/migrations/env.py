"""Alembic environment: migrations run on the connection limner hands over."""

from __future__ import annotations

from alembic import context

from limner.store.tables import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    """Run migrations on ``config.attributes['connection']`` (or the configured URL)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        from limner.store.db import make_engine

        engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata)
    context.run_migrations()


run_migrations()
