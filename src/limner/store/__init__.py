"""Persistence: SQLAlchemy tables, sessions and Alembic migrations, and the blob store."""

from limner.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, open_blob_store
from limner.store.db import Database, alembic_config, make_engine
from limner.store.keys import SpaceRef, count_keys, create_key, new_id, space_for_key
from limner.store.tables import (
    ApiKey,
    Base,
    Deployment,
    Explanation,
    Space,
    Subscription,
    Transaction,
)

__all__ = [
    "ApiKey",
    "Base",
    "BlobStore",
    "Database",
    "Deployment",
    "Explanation",
    "FsspecBlobStore",
    "LocalBlobStore",
    "Space",
    "SpaceRef",
    "Subscription",
    "Transaction",
    "alembic_config",
    "count_keys",
    "create_key",
    "make_engine",
    "new_id",
    "open_blob_store",
    "space_for_key",
]
