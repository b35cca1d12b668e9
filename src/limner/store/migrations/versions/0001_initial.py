"""The first tables: spaces, API keys, deployments, subscriptions, transactions, explanations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spaces",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("space_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index(op.f("ix_api_keys_space_id"), "api_keys", ["space_id"], unique=False)
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("space_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_deployments_space_id"), "deployments", ["space_id"], unique=False)
    op.create_index("ix_deployments_space_name", "deployments", ["space_id", "name"], unique=True)
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("space_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("deployment_id", sa.String(length=32), nullable=True),
        sa.Column("scoring_url", sa.Text(), nullable=True),
        sa.Column("model_metadata", sa.JSON(), nullable=False),
        sa.Column("explainability", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("deployment_id"),
    )
    op.create_index(op.f("ix_subscriptions_space_id"), "subscriptions", ["space_id"], unique=False)
    op.create_table(
        "transactions",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("space_id", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("image_blob", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index(op.f("ix_transactions_label"), "transactions", ["label"], unique=False)
    op.create_index(op.f("ix_transactions_space_id"), "transactions", ["space_id"], unique=False)
    op.create_index(
        "ix_transactions_sub_seq", "transactions", ["subscription_id", "seq"], unique=False
    )
    op.create_table(
        "explanations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("space_id", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("panes", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["transaction_id"], ["transactions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_explanations_space_id"), "explanations", ["space_id"], unique=False)
    op.create_index(op.f("ix_explanations_status"), "explanations", ["status"], unique=False)
    op.create_index(
        op.f("ix_explanations_transaction_id"), "explanations", ["transaction_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_explanations_transaction_id"), table_name="explanations")
    op.drop_index(op.f("ix_explanations_status"), table_name="explanations")
    op.drop_index(op.f("ix_explanations_space_id"), table_name="explanations")
    op.drop_table("explanations")
    op.drop_index("ix_transactions_sub_seq", table_name="transactions")
    op.drop_index(op.f("ix_transactions_space_id"), table_name="transactions")
    op.drop_index(op.f("ix_transactions_label"), table_name="transactions")
    op.drop_table("transactions")
    op.drop_index(op.f("ix_subscriptions_space_id"), table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_index("ix_deployments_space_name", table_name="deployments")
    op.drop_index(op.f("ix_deployments_space_id"), table_name="deployments")
    op.drop_table("deployments")
    op.drop_index(op.f("ix_api_keys_space_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("spaces")
