"""The audit trail: one record per state-changing request, hash-chained per space.

Each record's ``hash`` is the SHA-256 of its own fields and of the previous record's hash
(``prev_hash``; the first record of a space chains to :data:`GENESIS`). Altering a stored
record, deleting one or reordering them breaks the chain at that record, which
:func:`verify` names. The chain makes tampering evident; it does not stop someone with write
access to the database from rewriting the whole chain, which is why ``limner audit export``
lets an operator keep copies (a copy's last hash pins everything before it).

Appends are serialised per space: in this process by a lock, across replicas by the unique
``(space_id, n)`` constraint (a replica that loses the race reads the new head and retries).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from limner.store.db import Database
from limner.store.tables import AuditRecord, utcnow

#: What the first record of every space chains to.
GENESIS = "0" * 64

#: Retries of an append that lost the race for its place in the chain to another replica.
_APPEND_RETRIES = 20


@dataclass(frozen=True)
class AuditEntry:
    """What a record says: who (key id, name, role, client address), did what, to what, and
    how it ended (``ok``, ``denied`` or ``failed``)."""

    action: str
    outcome: str
    target: str = ""
    key_id: str | None = None
    key_name: str = ""
    role: str = "operator"
    client: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def _moment(at: datetime) -> str:
    if at.tzinfo is None:  # SQLite hands back naive UTC times
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(space_id: str, n: int, at: datetime, entry: AuditEntry, prev_hash: str) -> str:
    """The hash of a record: SHA-256 over a canonical JSON of every field and ``prev_hash``."""
    body = {
        "space_id": space_id,
        "n": n,
        "at": _moment(at),
        "key_id": entry.key_id,
        "key_name": entry.key_name,
        "role": entry.role,
        "client": entry.client,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "detail": entry.detail,
        "prev_hash": prev_hash,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def entry_of(row: AuditRecord) -> AuditEntry:
    """The entry a stored record says."""
    return AuditEntry(
        action=row.action,
        outcome=row.outcome,
        target=row.target,
        key_id=row.key_id,
        key_name=row.key_name,
        role=row.role,
        client=row.client,
        detail=dict(row.detail or {}),
    )


class AuditLog:
    """Appends records to each space's chain; :meth:`append` is safe from many threads."""

    def __init__(self, db: Database, *, enabled: bool = True) -> None:
        self.db = db
        self.enabled = enabled
        self._locks: dict[str, threading.Lock] = {}
        self._heads: dict[str, tuple[int, str]] = {}
        self._guard = threading.Lock()

    def _lock(self, space_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(space_id, threading.Lock())

    def _head(self, space_id: str) -> tuple[int, str]:
        with self.db.session() as s:
            row = s.execute(
                select(AuditRecord.n, AuditRecord.hash)
                .where(AuditRecord.space_id == space_id)
                .order_by(AuditRecord.n.desc())
                .limit(1)
            ).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def append(self, space_id: str, entry: AuditEntry) -> AuditRecord | None:
        """Append ``entry`` to the chain of ``space_id`` (nothing while the log is off)."""
        if not self.enabled:
            return None
        with self._lock(space_id):
            for _ in range(_APPEND_RETRIES):
                n, prev = self._heads.get(space_id) or self._head(space_id)
                at = utcnow()
                row = AuditRecord(
                    space_id=space_id,
                    n=n + 1,
                    at=at,
                    key_id=entry.key_id,
                    key_name=entry.key_name,
                    role=entry.role,
                    client=entry.client[:64],
                    action=entry.action,
                    target=entry.target[:200],
                    outcome=entry.outcome,
                    detail=entry.detail,
                    prev_hash=prev,
                    hash=record_hash(space_id, n + 1, at, entry, prev),
                )
                try:
                    with self.db.session() as s:
                        s.add(row)
                except IntegrityError:  # another replica took place n + 1: read the head again
                    self._heads.pop(space_id, None)
                    continue
                self._heads[space_id] = (n + 1, row.hash)
                return row
        raise RuntimeError(f"could not append to the audit trail of space {space_id}")


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: how many records it checked and the first broken one."""

    ok: bool
    checked: int
    broken_n: int | None = None
    reason: str = ""


def verify(db: Database, space_id: str, *, batch: int = 1000) -> Verdict:
    """Check the chain of ``space_id`` record by record (numbers, links and hashes)."""
    prev, expected, checked = GENESIS, 1, 0
    while True:
        with db.session() as s:
            rows = list(
                s.scalars(
                    select(AuditRecord)
                    .where(AuditRecord.space_id == space_id, AuditRecord.n >= expected)
                    .order_by(AuditRecord.n)
                    .limit(batch)
                )
            )
        if not rows:
            break
        for row in rows:
            if row.n != expected:
                return Verdict(False, checked, expected, f"record {expected} is missing")
            if row.prev_hash != prev:
                return Verdict(
                    False, checked, row.n, f"record {row.n} does not chain to record {row.n - 1}"
                )
            if record_hash(space_id, row.n, row.at, entry_of(row), row.prev_hash) != row.hash:
                return Verdict(
                    False, checked, row.n, f"record {row.n} was altered (its hash does not match)"
                )
            prev, expected, checked = row.hash, expected + 1, checked + 1
    return Verdict(True, checked)


@dataclass(frozen=True)
class AuditQuery:
    """Filters of :func:`query` (all optional)."""

    action: str | None = None
    key_id: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def query(
    db: Database, space_id: str, filters: AuditQuery, *, limit: int = 100, offset: int = 0
) -> tuple[list[AuditRecord], int]:
    """Records of ``space_id`` matching ``filters``, newest first, and how many match."""
    where = [AuditRecord.space_id == space_id]
    if filters.action is not None:
        where.append(AuditRecord.action == filters.action)
    if filters.key_id is not None:
        where.append(AuditRecord.key_id == filters.key_id)
    if filters.target is not None:
        where.append(AuditRecord.target == filters.target)
    if filters.since is not None:
        where.append(AuditRecord.at >= filters.since)
    if filters.until is not None:
        where.append(AuditRecord.at < filters.until)
    with db.session() as s:
        total = int(s.scalar(select(func.count()).select_from(AuditRecord).where(*where)) or 0)
        rows = list(
            s.scalars(
                select(AuditRecord)
                .where(*where)
                .order_by(AuditRecord.n.desc())
                .limit(limit)
                .offset(offset)
            )
        )
    return rows, total


def record_dict(row: AuditRecord) -> dict[str, Any]:
    """A record as JSON (what ``GET /v1/audit`` and ``limner audit export`` write)."""
    return {
        "n": row.n,
        "at": _moment(row.at),
        "key_id": row.key_id,
        "key_name": row.key_name,
        "role": row.role,
        "client": row.client,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "detail": row.detail or {},
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def export(db: Database, space_id: str, *, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every record of ``space_id``, oldest first, as :func:`record_dict`."""
    after = 0
    while True:
        with db.session() as s:
            rows = list(
                s.scalars(
                    select(AuditRecord)
                    .where(AuditRecord.space_id == space_id, AuditRecord.n > after)
                    .order_by(AuditRecord.n)
                    .limit(batch)
                )
            )
        if not rows:
            return
        for row in rows:
            yield record_dict(row)
        after = rows[-1].n
