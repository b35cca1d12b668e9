"""Content-addressed blob storage for images and panes.

:class:`BlobStore` is the interface (put bytes, get them back by their SHA-256); the local
folder implementation is the default, and a shared store (fsspec, S3) can implement the same
three methods.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from limner.errors import NotFoundError


class BlobStore(Protocol):
    """Where images and rendered panes are kept, addressed by the SHA-256 of their bytes."""

    def put(self, data: bytes) -> str:
        """Store ``data``; return its key (the hex SHA-256). Storing twice is a no-op."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; :class:`NotFoundError` when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        ...


class LocalBlobStore:
    """Blobs as files ``<root>/<2 hex>/<64 hex>``, written atomically."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise NotFoundError(f"no blob {key!r}")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        """Store ``data``; return its SHA-256 key."""
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no blob {key!r}") from exc

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        try:
            return self._path(key).exists()
        except NotFoundError:
            return False
