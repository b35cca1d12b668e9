"""Tenancy: key roles and use, per-space scoring ids, stored remote headers, upload sizes.

- ``api_keys.role`` (``tenant`` or ``admin``), ``last_used_at`` and ``revoked_at``;
- ``transactions.scoring_id``: the id a client chose or was given, unique within its space
  (``transactions.id`` stays the internal, globally unique key that explanations point at);
- ``deployments.headers`` / ``subscriptions.headers``: HTTP headers sent to a remote model or
  an external scoring URL (never shown back);
- ``deployments.size_bytes``: bytes an uploaded model takes on disk (the space's quota).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="tenant")
        )
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("headers", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("headers", sa.JSON(), nullable=True))
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("scoring_id", sa.String(length=64), nullable=True))
    op.execute("UPDATE transactions SET scoring_id = id")
    with op.batch_alter_table("transactions") as batch:
        batch.alter_column("scoring_id", existing_type=sa.String(length=64), nullable=False)
        batch.create_index("ix_transactions_space_scoring", ["space_id", "scoring_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_space_scoring")
        batch.drop_column("scoring_id")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("headers")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("size_bytes")
        batch.drop_column("headers")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
        batch.drop_column("role")
