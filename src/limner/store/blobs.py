"""Content-addressed blob storage for images and panes.

:class:`BlobStore` is the interface (put bytes, get them back by their SHA-256); the local
folder implementation is the default; :class:`FsspecBlobStore` keeps blobs anywhere fsspec
reaches (``s3://``, ``gs://``, ...) for replicas that share no file system.
:func:`open_blob_store` picks one from a folder or a URL.

One blob may be referenced by many rows (the same image logged twice, in two spaces even), so a
blob is deleted only once no row references it: :func:`release_blobs` checks and deletes, and
:func:`referencing` brackets the insert of rows that reference blobs just stored, so that in
one process a release never deletes a blob between its ``put`` and its row's insert.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
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

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing when it is not stored). See :func:`release_blobs`."""
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

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing when it is not stored)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except NotFoundError:
            return


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

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing when it is not stored)."""
        try:
            self._fs.rm_file(self._path(key))
        except (NotFoundError, FileNotFoundError):
            return


def open_blob_store(location: str) -> BlobStore:
    """A blob store at ``location``: a folder (or ``file://`` URL), or any fsspec URL."""
    if location.startswith("file://"):
        return LocalBlobStore(location.removeprefix("file://"))
    if "://" in location:
        return FsspecBlobStore(location)
    return LocalBlobStore(location)


class _ReleaseLock:
    """Shared by the inserts of rows that reference stored blobs, exclusive to a release.

    A release waiting for the lock goes before inserts that come after it (no starvation);
    :attr:`releases` counts finished releases, so an insert knows whether one ran since its
    ``put``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharers = 0
        self._waiting = 0
        self._releasing = False
        self.releases = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._releasing and not self._waiting)
            self._sharers += 1
        try:
            yield
        finally:
            with self._cond:
                self._sharers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._releasing and not self._sharers)
            self._waiting -= 1
            self._releasing = True
        try:
            yield
        finally:
            with self._cond:
                self._releasing = False
                self.releases += 1
                self._cond.notify_all()


_RELEASE = _ReleaseLock()

#: Blobs checked and deleted under one hold of the release lock.
_RELEASE_BATCH = 256


def releases() -> int:
    """How many releases have finished in this process: read before storing blobs, and give it
    to :func:`referencing`."""
    return _RELEASE.releases


@contextmanager
def referencing(store: BlobStore, stored: Mapping[str, bytes], since: int) -> Iterator[None]:
    """Insert (and commit) the rows that reference ``stored`` (key → bytes, stored with ``put``
    after :func:`releases` said ``since``) inside this block.

    No release runs during the block; when one ran after ``since``, every blob of ``stored``
    is checked at the end and put again if it was deleted (its ``put`` found it stored, then a
    release deleted it before the rows were in).
    """
    with _RELEASE.shared():
        yield
        if _RELEASE.releases != since:
            for key, data in stored.items():
                if not store.exists(key):
                    store.put(data)


def release_blobs(
    store: BlobStore, keys: Iterable[str], referenced: Callable[[list[str]], set[str]]
) -> int:
    """Delete those of ``keys`` that no row references any more; return how many.

    ``referenced(batch)`` answers which keys of ``batch`` rows still reference (every table
    that holds blob keys, every space: blobs are shared by content). Call it after the rows that
    referenced ``keys`` are deleted. The check and the deletes hold the release lock, so rows
    inserted meanwhile through :func:`referencing` keep their blobs (in this process: replicas
    sharing a store do not share the lock).
    """
    ordered = sorted(set(keys))
    deleted = 0
    for start in range(0, len(ordered), _RELEASE_BATCH):
        batch = ordered[start : start + _RELEASE_BATCH]
        with _RELEASE.exclusive():
            live = referenced(batch)
            for key in batch:
                if key not in live:
                    store.delete(key)
                    deleted += 1
    return deleted
