"""Persistence: SQLAlchemy tables, sessions and Alembic migrations, and the blob store."""

from limner.store.audit import AuditEntry, AuditLog
from limner.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, open_blob_store
from limner.store.db import Database, alembic_config, make_engine
from limner.store.keys import (
    ROLES,
    KeyInfo,
    SpaceRef,
    count_keys,
    create_key,
    create_key_info,
    list_keys,
    new_id,
    revoke_key,
    space_for_key,
)
from limner.store.tables import (
    Annotation,
    ApiKey,
    AuditRecord,
    Base,
    Deployment,
    Explanation,
    Space,
    Subscription,
    Transaction,
)

__all__ = [
    "ROLES",
    "Annotation",
    "ApiKey",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
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
    "create_key_info",
    "list_keys",
    "make_engine",
    "new_id",
    "open_blob_store",
    "revoke_key",
    "space_for_key",
]
