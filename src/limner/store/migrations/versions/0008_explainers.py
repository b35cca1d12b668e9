"""Amortized explainers of deployments: their training jobs and trained weights.

``explainers``: one row per training (a version of a deployment's explainer), its status and
progress, and once finished its description (``meta``) and the blob of its safetensors weights.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "explainers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "space_id",
            sa.String(32),
            sa.ForeignKey("spaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "deployment_id",
            sa.String(32),
            sa.ForeignKey("deployments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("images_blob", sa.String(64), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("stage", sa.String(16), nullable=False, server_default=""),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("weights_blob", sa.String(64), nullable=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("requested_by_key", sa.String(32), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_explainers_space_id", "explainers", ["space_id"])
    op.create_index("ix_explainers_deployment_id", "explainers", ["deployment_id"])
    op.create_index("ix_explainers_status", "explainers", ["status"])
    op.create_index(
        "ix_explainers_dep_version", "explainers", ["deployment_id", "version"], unique=True
    )


def downgrade() -> None:
    op.drop_table("explainers")
