"""The reviewer's desk: roles and named keys, finding transactions, annotations, the audit trail.

- ``api_keys.name``: who holds the key (roles gain ``viewer``; the column is unchanged);
- ``deployments.artifact_sha256`` and ``retired_at``: the model a report names, and deletions
  that keep reviewed history;
- ``transactions.external_id`` (unique per subscription), ``source`` and ``feedback``;
- ``explanations``: the deployment that explains, the compare group, who asked, when exported;
- ``annotations``: notes and verdicts;
- ``audit_records``: the per-space hash chain of state-changing requests.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("name", sa.String(200), nullable=False, server_default=""))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("artifact_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("external_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("source", sa.String(500), nullable=True))
        batch.add_column(sa.Column("feedback", sa.String(200), nullable=True))
        batch.create_index(
            "ix_transactions_sub_external", ["subscription_id", "external_id"], unique=True
        )
        batch.create_index("ix_transactions_feedback", ["feedback"])
    with op.batch_alter_table("explanations") as batch:
        batch.add_column(sa.Column("deployment_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("compare_group", sa.String(32), nullable=True))
        batch.add_column(sa.Column("requested_by_key", sa.String(32), nullable=True))
        batch.add_column(sa.Column("requested_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("requested_role", sa.String(16), nullable=True))
        batch.add_column(sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_explanations_compare_group", ["compare_group"])
    op.create_table(
        "annotations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "space_id",
            sa.String(32),
            sa.ForeignKey("spaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "explanation_id",
            sa.String(32),
            sa.ForeignKey("explanations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_annotations_space_id", "annotations", ["space_id"])
    op.create_index("ix_annotations_explanation_id", "annotations", ["explanation_id"])
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("space_id", sa.String(32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("space_id", "n", name="uq_audit_space_n"),
    )
    op.create_index("ix_audit_records_space_id", "audit_records", ["space_id"])
    op.create_index("ix_audit_records_at", "audit_records", ["at"])
    op.create_index("ix_audit_records_key_id", "audit_records", ["key_id"])
    op.create_index("ix_audit_records_action", "audit_records", ["action"])


def downgrade() -> None:
    op.drop_table("audit_records")
    op.drop_table("annotations")
    with op.batch_alter_table("explanations") as batch:
        batch.drop_index("ix_explanations_compare_group")
        for column in (
            "exported_at",
            "requested_role",
            "requested_by",
            "requested_by_key",
            "compare_group",
            "deployment_id",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_feedback")
        batch.drop_index("ix_transactions_sub_external")
        for column in ("feedback", "source", "external_id"):
            batch.drop_column(column)
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("retired_at")
        batch.drop_column("artifact_sha256")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("name")
