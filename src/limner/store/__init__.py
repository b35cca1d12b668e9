"""Persistence: SQLAlchemy tables, sessions and Alembic migrations, and the blob store."""

from limner.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, open_blob_store
from limner.store.db import Database, alembic_config, make_engine
from limner.store.keys import (
    KeyInfo,
    SpaceRef,
    count_keys,
    create_key,
    list_keys,
    new_id,
    revoke_key,
    space_for_key,
)
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
    "KeyInfo",
    "LocalBlobStore",
    "Space",
    "SpaceRef",
    "Subscription",
    "Transaction",
    "alembic_config",
    "count_keys",
    "create_key",
    "list_keys",
    "make_engine",
    "new_id",
    "open_blob_store",
    "revoke_key",
    "space_for_key",
]
