"""The audit trail keeps one index: the chain's own ``(space_id, n)``.

Every index is written on every append, and an audited response waits for its append: the
four secondary indexes (space, time, key, action) doubled what a record cost to store
(docs/benchmarks.md, "Audit trail overhead"). ``GET /v1/audit`` reads one space's records
through the chain's index and filters those.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The indexes 0005 made besides the chain's own.
SECONDARY = {
    "ix_audit_records_space_id": ["space_id"],
    "ix_audit_records_at": ["at"],
    "ix_audit_records_key_id": ["key_id"],
    "ix_audit_records_action": ["action"],
}


def upgrade() -> None:
    for name in SECONDARY:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    for name, columns in SECONDARY.items():
        op.create_index(name, "audit_records", columns)
