"""Content-addressed blob storage for images and panes.

:class:`BlobStore` is the interface (put bytes, get them back by their SHA-256); the local
folder implementation is the default; :class:`FsspecBlobStore` keeps blobs anywhere fsspec
reaches (``s3://``, ``gs://``, ...) for replicas that share no file system.
:func:`open_blob_store` picks one from a folder or a URL.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from limner.errors import NotFoundError
from limner.store.private import private_dir


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
        self.root = private_dir(root)

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
        if not path.parent.exists():
            private_dir(path.parent)
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


class FsspecBlobStore:
    """Blobs as ``<url>/<2 hex>/<64 hex>`` on any fsspec file system (S3, GCS, ...)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        from fsspec.core import url_to_fs

        self.url = url
        self._fs, root = url_to_fs(url, **storage_options)
        self._root = root.rstrip("/")

    def _path(self, key: str) -> str:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise NotFoundError(f"no blob {key!r}")
        return f"{self._root}/{key[:2]}/{key}"

    def put(self, data: bytes) -> str:
        """Store ``data`` (one object write: whole or absent); return its SHA-256 key."""
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if not self._fs.exists(path):
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self._fs.pipe_file(path, data)
        return key

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``."""
        try:
            return bytes(self._fs.cat_file(self._path(key)))
        except FileNotFoundError as exc:
            raise NotFoundError(f"no blob {key!r}") from exc

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        try:
            return bool(self._fs.exists(self._path(key)))
        except NotFoundError:
            return False


def open_blob_store(location: str) -> BlobStore:
    """A blob store at ``location``: a folder (or ``file://`` URL), or any fsspec URL."""
    if location.startswith("file://"):
        return LocalBlobStore(location.removeprefix("file://"))
    if "://" in location:
        return FsspecBlobStore(location)
    return LocalBlobStore(location)
