"""Transaction storage: what transaction images count against their space's quota.

- ``transactions.image_bytes``: bytes of the stored image (rows logged before this revision
  count 0: the migration does not read the blob store);
- ``spaces.image_bytes``: the sum of its transactions' ``image_bytes``, kept with every insert
  and delete of transactions (one row to read per quota check, not a sum over the space);
- ``ix_transactions_image_blob``: whether a blob is still referenced before it is deleted
  (blobs are shared by content, across spaces too).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spaces") as batch:
        batch.add_column(
            sa.Column("image_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(
            sa.Column("image_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_index("ix_transactions_image_blob", ["image_blob"])


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_image_blob")
        batch.drop_column("image_bytes")
    with op.batch_alter_table("spaces") as batch:
        batch.drop_column("image_bytes")
