"""Object detectors' transactions keep their detections.

``transactions.detections``: a detector's boxes (``xyxy`` pixels of the photo), labels and
scores, best first; null for a classifier's transaction.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("detections", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("detections")
