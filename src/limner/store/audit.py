"""The audit trail: one record per state-changing request, hash-chained per space.

Each record's ``hash`` is the SHA-256 of its own fields and of the previous record's hash
(``prev_hash``; the first record of a space chains to :data:`GENESIS`). Altering a stored
record, deleting one or reordering them breaks the chain at that record, which
:func:`verify` names. The chain makes tampering evident; it does not stop someone with write
access to the database from rewriting the whole chain, which is why ``limner audit export``
lets an operator keep copies (a copy's last hash pins everything before it).

Appends are serialised per space: in this process by one lock (a writer thread stores the
appends that arrive while it writes together, in one statement; on SQLite an append is stored
in its caller's thread when nobody else is writing), across replicas by the unique
``(space_id, n)`` constraint (a replica that loses the race reads the new head and retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import PoolProxiedConnection

from limner.store.db import Database
from limner.store.tables import AuditRecord, utcnow

#: What the first record of every space chains to.
GENESIS = "0" * 64

#: How long an append may keep losing the race for its place to other replicas (seconds).
_RACE_SECONDS = 30.0

#: Seconds the writer thread waits for work before it ends (the next append starts another).
_IDLE_SECONDS = 10.0

#: Most records written in one statement (SQLite's limit on bound values stays far off).
_MAX_BATCH = 200

#: First and longest pause between tries of SQLite's write lock (seconds).
_SQLITE_POLL = 0.0002
_SQLITE_POLL_CAP = 0.002


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


def normalised(entry: AuditEntry) -> AuditEntry:
    """``entry`` as the database will hand it back: text cut to its column's length and the
    detail through JSON (tuples become lists, other values text), so that the hash computed
    now is the hash of what is stored."""
    detail = json.loads(json.dumps(entry.detail, default=str, sort_keys=True))
    return replace(
        entry,
        action=entry.action[:64],
        outcome=entry.outcome[:16],
        target=entry.target[:200],
        key_name=entry.key_name[:200],
        role=entry.role[:16],
        client=entry.client[:64],
        detail=detail if isinstance(detail, dict) else {"value": detail},
    )


def _moment(at: datetime) -> str:
    if at.tzinfo is None:  # SQLite hands back naive UTC times
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _fields(space_id: str, n: int, entry: AuditEntry, prev_hash: str) -> dict[str, Any]:
    """Every field of record ``n`` but its time and its own hash."""
    return {
        "space_id": space_id,
        "n": n,
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


def record_hash(space_id: str, n: int, at: datetime, entry: AuditEntry, prev_hash: str) -> str:
    """The hash of a record: SHA-256 over a canonical JSON of every field and ``prev_hash``."""
    body = {**_fields(space_id, n, entry, prev_hash), "at": _moment(at)}
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


@dataclass(eq=False)
class _Pending:
    """An entry waiting for its place in its space's chain, and how to tell its caller: a
    thread waits on ``event``; a coroutine on ``future`` of ``loop``."""

    space_id: str
    entry: AuditEntry
    event: threading.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[dict[str, Any]] | None = None
    row: dict[str, Any] | None = None
    error: BaseException | None = None


class AuditLog:
    """Appends records to each space's chain; safe from many threads and event loops.

    One writer thread per log stores what is queued: everything that arrived while it was
    writing goes into the next statement, for every space at once (a busy service pays one
    commit per batch, not one per request). A caller returns only once its own record is
    stored: :meth:`append` blocks its thread, :meth:`append_async` awaits without taking a
    thread (the service's middleware uses it). The writer thread ends after
    :data:`_IDLE_SECONDS` without work and starts again on demand.

    On SQLite, :meth:`append` first tries to store the record at once, in the caller's thread,
    and :meth:`append_async` stores the appends of one turn of the event loop together at its
    end: when no other append of this log is being written and SQLite's write lock of the
    trail's file is free, one INSERT that commits itself takes about 0.1 ms (WAL, no flush).
    That saves the two thread wake-ups of a hand-off to the writer, which on a busy machine cost
    an audited request several milliseconds of waiting for a CPU (measured with
    ``benchmarks/audit_overhead.py``). When the lock is taken, the records go to the writer.
    """

    def __init__(self, db: Database, *, enabled: bool = True) -> None:
        self.db = db
        self.enabled = enabled
        #: The head of each chain as this log last wrote it (only the writer thread uses it).
        self._heads: dict[str, tuple[int, str]] = {}
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        #: Held while a batch is written (``_heads`` and the chains' order depend on it).
        self._writing = threading.Lock()
        #: The event loop's own inserter (SQLite only; it never waits for the write lock).
        self._inline: _Inserter | None = None
        #: Each event loop's appends of its current turn (SQLite only, see append_async).
        self._turns: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}

    def append(self, space_id: str, entry: AuditEntry) -> dict[str, Any] | None:
        """Append ``entry`` to the chain of ``space_id`` (nothing while the log is off); return
        the stored record's columns (``n``, ``at``, ``hash`` …) once it is stored."""
        if not self.enabled:
            return None
        pending = _Pending(space_id, normalised(entry), event=threading.Event())
        row = self._store_inline(pending)
        if row is not None:
            return row
        self._submit(pending)
        assert pending.event is not None
        pending.event.wait()
        if pending.error is not None:
            raise _append_error(space_id, pending.error) from pending.error
        return pending.row

    async def append_async(self, space_id: str, entry: AuditEntry) -> dict[str, Any] | None:
        """:meth:`append` for a coroutine: waits on the event loop, not in a thread.

        On SQLite the appends of one turn of the event loop are stored together, at the end of
        the turn, in one statement (:meth:`_flush_turn`): each statement lets go of the
        interpreter lock and the loop then waits to get it back, so a busy service pays that
        wait once for all the records of a turn, not once per record."""
        if not self.enabled:
            return None
        loop = asyncio.get_running_loop()
        pending = _Pending(space_id, normalised(entry), loop=loop, future=loop.create_future())
        if self.db.trail.engine.dialect.name == "sqlite":
            turn = self._turns.setdefault(loop, [])
            turn.append(pending)
            if len(turn) == 1:
                loop.call_soon(self._flush_turn, loop)
        else:
            self._submit(pending)
        assert pending.future is not None
        try:
            return await pending.future
        except Exception as exc:
            raise _append_error(space_id, exc) from exc

    def _flush_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop: store the appends of this turn in one statement when the trail's
        file is free, else hand them to the writer thread."""
        batch = self._turns.pop(loop, [])
        if not batch:
            return
        try:
            rows = self._store_now(batch)
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
            _settle(batch)
            return
        if rows is None:
            for pending in batch:
                self._submit(pending)
            return
        for pending, row in zip(batch, rows, strict=True):
            pending.row = row
        _settle(batch)

    def _store_inline(self, pending: _Pending) -> dict[str, Any] | None:
        """Store ``pending`` in this thread if that needs no wait (SQLite only): its record,
        or None when it must go to the writer."""
        if self.db.trail.engine.dialect.name != "sqlite":
            return None
        try:
            rows = self._store_now([pending])
        except Exception as exc:
            raise _append_error(pending.space_id, exc) from exc
        return rows[0] if rows is not None else None

    def _store_now(self, batch: list[_Pending]) -> list[dict[str, Any]] | None:
        """Store ``batch`` in this thread, in one statement, if that needs no wait (SQLite
        only): the records, or None when the trail is being written (by this log's writer, or
        another process holding SQLite's write lock)."""
        if not self._writing.acquire(blocking=False):
            return None
        try:
            if self._inline is None:
                self._inline = _Inserter(self.db.trail.engine, wait=False)
            return self._write(self._inline, batch)
        except _Busy:
            return None
        finally:
            self._writing.release()

    def close(self) -> None:
        """Give back the event loop's connection (the writer thread gives back its own)."""
        with self._writing:
            inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()

    def _submit(self, pending: _Pending) -> None:
        with self._cond:
            self._queue.append(pending)
            if self._writer is None:
                self._start_writer()
            else:
                self._cond.notify()

    def _start_writer(self) -> None:
        """Start the writer thread (with ``_cond`` held)."""
        self._writer = threading.Thread(target=self._run, name="limner-audit-writer", daemon=True)
        self._writer.start()

    def _run(self) -> None:
        """The writer thread: store the queue batch by batch until it stays empty a while."""
        inserter = _Inserter(self.db.trail.engine)
        try:
            while True:
                with self._cond:
                    if not self._queue:
                        self._cond.wait(_IDLE_SECONDS)
                    if not self._queue:
                        return
                    batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
                try:
                    with self._writing:
                        rows = self._write(inserter, batch)
                    for pending, row in zip(batch, rows, strict=True):
                        pending.row = row
                except BaseException as exc:  # every caller of the batch hears of it
                    for pending in batch:
                        pending.error = exc
                _tell(batch)
        finally:  # idle, or (should it ever happen) stopped by an error: the next starts anew
            inserter.close()
            with self._cond:
                self._writer = None
                if self._queue:
                    self._start_writer()

    def _head(self, space_id: str) -> tuple[int, str]:
        with self.db.trail.session() as s:
            row = s.execute(
                select(AuditRecord.n, AuditRecord.hash)
                .where(AuditRecord.space_id == space_id)
                .order_by(AuditRecord.n.desc())
                .limit(1)
            ).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def _write(self, inserter: _Inserter, batch: list[_Pending]) -> list[dict[str, Any]]:
        """Store ``batch`` after the heads of its spaces' chains, all or none.

        The heads are the ones this log wrote last; when another process has written since,
        the INSERT hits the unique ``(space_id, n)`` and this reads the heads again and retries,
        after a random pause that grows with each loss (so that busy replicas take turns).
        """
        deadline = time.monotonic() + _RACE_SECONDS
        losses = 0
        while True:
            start = {p.space_id: self._heads.get(p.space_id) for p in batch}
            heads = {sid: head or self._head(sid) for sid, head in start.items()}
            first = dict(heads)
            values = []
            for pending in batch:
                n, prev = heads[pending.space_id]
                values.append(_row(pending.space_id, n + 1, pending.entry, prev))
                heads[pending.space_id] = (n + 1, values[-1]["hash"])
            try:
                inserter.insert(values)
            except IntegrityError:
                moved = False
                for sid, (n, _) in first.items():
                    self._heads[sid] = self._head(sid)
                    moved = moved or self._heads[sid][0] != n
                if not moved or time.monotonic() > deadline:
                    raise  # not a place taken by another process, or lost for too long
                losses += 1
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**losses)))
                continue
            self._heads.update(heads)
            return values


def _row(space_id: str, n: int, entry: AuditEntry, prev_hash: str) -> dict[str, Any]:
    """The columns of record ``n`` of ``space_id``, stored now, chained to ``prev_hash``."""
    at = utcnow()
    return {
        **_fields(space_id, n, entry, prev_hash),
        "at": at,
        "hash": record_hash(space_id, n, at, entry, prev_hash),
    }


def _tell(batch: list[_Pending]) -> None:
    """Wake the callers of ``batch``: threads one by one, each event loop once."""
    loops: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for pending in batch:
        if pending.event is not None:
            pending.event.set()
        elif pending.loop is not None:
            loops.setdefault(pending.loop, []).append(pending)
    for loop, waiting in loops.items():
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits on it
            loop.call_soon_threadsafe(_settle, waiting)


def _settle(waiting: list[_Pending]) -> None:
    """On the event loop: hand each coroutine its record or its error."""
    for pending in waiting:
        future = pending.future
        if future is None or future.done():
            continue
        if pending.error is not None:
            future.set_exception(pending.error)
        else:
            assert pending.row is not None
            future.set_result(pending.row)


class _Busy(Exception):
    """SQLite's write lock is taken, and the inserter does not wait for it."""


def _append_error(space_id: str, error: BaseException) -> RuntimeError:
    return RuntimeError(f"could not append to the audit trail of space {space_id}: {error}")


#: The columns an append writes, in the order of the SQLite statement's placeholders.
_COLUMNS = (
    "space_id",
    "n",
    "at",
    "key_id",
    "key_name",
    "role",
    "client",
    "action",
    "target",
    "outcome",
    "detail",
    "prev_hash",
    "hash",
)


@functools.lru_cache(maxsize=128)
def _insert_sql(rows: int, mark: str) -> str:
    """The statement that stores ``rows`` records, with the driver's placeholder ``mark``."""
    one = "(" + ", ".join([mark] * len(_COLUMNS)) + ")"
    return f"INSERT INTO {AuditRecord.__tablename__} ({', '.join(_COLUMNS)}) VALUES " + (
        ", ".join([one] * rows)
    )


class _Inserter:
    """How the writer thread stores a batch: one multi-row INSERT that is a transaction of its
    own, all or none, on a driver connection in autocommit mode that the thread keeps while it
    lives (not a pool check-out with its ping, then BEGIN, INSERT, COMMIT).

    The statement goes to the driver as text with the values through the columns' own bind
    processors, so rows are stored exactly as the ORM stores them; SQLAlchemy's compiler is
    skipped (on PostgreSQL it had cost about 1 ms of CPU a record, measured in the writer).

    On SQLite the connection's busy timeout is 0 and the inserter polls for the write lock
    every few hundred microseconds. Two things made an audited request wait on SQLite, both
    measured with ``benchmarks/audit_overhead.py``: the service's transactions begin with
    ``BEGIN IMMEDIATE`` (the write lock) and their threads wait for the interpreter lock
    between statements while they hold it; and SQLite's own busy handler sleeps 1, 2, 5, 10,
    then up to 100 ms between tries, so a waiting writer misses the short moments when the
    lock is free. One statement takes the lock, writes and commits inside SQLite without giving
    the interpreter lock back in between; polling takes the lock within
    :data:`_SQLITE_POLL_CAP` seconds of it freeing up, for as long as the connection's own busy
    timeout.
    """

    def __init__(self, engine: Engine, *, wait: bool = True) -> None:
        """``wait``: poll for SQLite's write lock (else raise :class:`_Busy` at once)."""
        self.engine = engine
        self.wait = wait
        self.sqlite = engine.dialect.name == "sqlite"
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._raw: PoolProxiedConnection | None = None
        self._busy_ms = 0
        self._autocommit = False
        self._bind: list[tuple[str, Any]] | None = None

    def insert(self, values: list[dict[str, Any]]) -> None:
        """Store ``values`` (rows of ``audit_records``), all or none."""
        try:
            self._insert(values)
        except (IntegrityError, _Busy):
            raise
        except BaseException:
            self.close()  # a broken connection: the next batch takes a fresh one
            raise

    def _insert(self, values: list[dict[str, Any]]) -> None:
        params: list[Any] = []
        for row in values:
            for name, process in self._processors():
                params.append(process(row[name]) if process is not None else row[name])
        sql = _insert_sql(len(values), self._mark)
        conn = self._connection()
        unique = self.engine.dialect.loaded_dbapi.IntegrityError
        deadline = time.monotonic() + self._busy_ms / 1000
        pause = _SQLITE_POLL
        while True:
            try:
                cursor = conn.cursor()
                try:
                    cursor.execute(sql, params)  # autocommit: the statement commits itself
                finally:
                    cursor.close()
                return
            except unique as exc:
                raise IntegrityError(sql, params, exc) from exc
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
                if busy and not self.wait:
                    raise _Busy() from exc
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _SQLITE_POLL_CAP)

    def _processors(self) -> list[tuple[str, Any]]:
        """Each column's bind processor (None where the value goes as it is), in
        :data:`_COLUMNS`' order; looked up once per inserter."""
        if self._bind is None:
            columns = AuditRecord.__table__.columns
            dialect = self.engine.dialect
            self._bind = [
                (name, columns[name].type.dialect_impl(dialect).bind_processor(dialect))
                for name in _COLUMNS
            ]
        return self._bind

    def _connection(self) -> Any:
        """The driver connection, in autocommit mode (SQLite: with no busy timeout)."""
        if self._raw is None:
            raw = self.engine.raw_connection()
            conn: Any = raw.driver_connection
            if self.sqlite:  # isolation_level is None on the engine's connections
                self._busy_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
                conn.execute("PRAGMA busy_timeout = 0")
            else:
                conn.rollback()  # the pool hands out a connection outside any transaction
                self._autocommit = bool(conn.autocommit)
                conn.autocommit = True
            self._raw = raw
        return self._raw.driver_connection

    def close(self) -> None:
        """Give the connection back to the pool (as it was taken)."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        with contextlib.suppress(Exception):
            conn: Any = raw.driver_connection
            if self.sqlite:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            else:
                conn.autocommit = self._autocommit
        with contextlib.suppress(Exception):
            raw.close()


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
        with db.trail.session() as s:
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
    with db.trail.session() as s:
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
        "space_id": row.space_id,
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


def count(db: Database, space_id: str) -> int:
    """How many records the chain of ``space_id`` has."""
    with db.trail.session() as s:
        found = s.scalar(
            select(func.count()).select_from(AuditRecord).where(AuditRecord.space_id == space_id)
        )
    return int(found or 0)


def export(db: Database, space_id: str, *, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every record of ``space_id``, oldest first, as :func:`record_dict`."""
    after = 0
    while True:
        with db.trail.session() as s:
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
