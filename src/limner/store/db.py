"""Database engine, sessions and migrations (SQLite in WAL mode, or PostgreSQL by URL)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Table, create_engine, delete, event, inspect, select, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from limner.errors import InvalidInputError
from limner.store.private import FILE_MODE, private_dir, private_file
from limner.store.tables import AuditRecord


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite gets WAL, a busy timeout and serialized writers."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidInputError(f"database URL {url!r} cannot be read") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_sqlite_file(Path(parsed.database))
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, pool_size=20
        )
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=30, pool_pre_ping=True)


def _private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its WAL and SHM files take the
    database's mode), and tighten the modes of an existing one."""
    if not path.parent.exists():
        private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for suffix in ("", "-wal", "-shm"):
        private_file(f"{path}{suffix}")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Take the write lock up front: a reader that later writes would otherwise fail with
        # "database is locked" instead of waiting its turn.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


#: PostgreSQL advisory lock held while migrating ("limner" in ASCII).
_MIGRATION_LOCK = 0x6C696D6E6572


_TRAIL_TABLE: Table = AuditRecord.__table__  # type: ignore[assignment]


def trail_url(url: str) -> str | None:
    """Where a SQLite file database keeps its audit trail: a file of its own beside it
    (``limner.db`` → ``limner-audit.db``); None for other databases (the trail is a table of
    the database itself) and for in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    path = Path(parsed.database)
    return parsed.set(
        database=str(path.with_name(f"{path.stem}-audit{path.suffix}"))
    ).render_as_string(hide_password=False)


class Database:
    """An engine and its session factory, and the database that keeps the audit trail."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._trail: Database | None = None
        self._trail_lock = threading.Lock()

    @property
    def trail(self) -> Database:
        """The database that keeps the audit trail (``limner.store.audit``).

        PostgreSQL keeps it in a table of its own database. A SQLite file keeps it in a second
        file beside it (:func:`trail_url`): SQLite has one write lock per file, which every
        transaction of the service takes, and an audited response waits until its record is
        stored, so records written to the same file queued behind the service's own writes
        (docs/architecture.md, "The audit trail has a file of its own on SQLite"). Records an
        older limner stored in the main file move to the trail's file the first time it opens.
        """
        if self._trail is not None:
            return self._trail
        with self._trail_lock:
            if self._trail is None:
                url = trail_url(self.url)
                if url is None:
                    self._trail = self
                else:
                    trail = Database(url)
                    _TRAIL_TABLE.create(trail.engine, checkfirst=True)
                    _drop_secondary_indexes(trail.engine)
                    _move_records(self.engine, trail.engine)
                    self._trail = trail
        return self._trail

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def migrate(self) -> None:
        """Bring the schema to the newest migration (``alembic upgrade head``) and open the
        audit trail's database."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # replicas starting together migrate in turn
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        _ = self.trail

    def close(self) -> None:
        """Close every pooled connection (the audit trail's too)."""
        if self._trail is not None and self._trail is not self:
            self._trail.close()
        self._trail = None
        self.engine.dispose()


#: The indexes of the trail that migration 0006 dropped.
_OLD_TRAIL_INDEXES = (
    "ix_audit_records_space_id",
    "ix_audit_records_at",
    "ix_audit_records_key_id",
    "ix_audit_records_action",
)


def _drop_secondary_indexes(engine: Engine) -> None:
    """Drop the indexes an older trail file has besides the chain's own (migration 0006 does
    the same in the main database)."""
    with engine.begin() as conn:
        for name in _OLD_TRAIL_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")


def _move_records(source: Engine, target: Engine, batch: int = 1000) -> None:
    """Move the audit records ``source`` holds (written before the trail had a file of its own)
    to ``target``, keeping each as it was; safe to run again after an interruption."""
    if not inspect(source).has_table(AuditRecord.__tablename__):
        return
    table = _TRAIL_TABLE
    columns = [c for c in table.columns if c.name != "seq"]
    while True:
        with source.connect() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    select(*columns).order_by(table.c.seq).limit(batch)
                ).mappings()
            ]
        if not rows:
            return
        keys = [(r["space_id"], r["n"]) for r in rows]
        with target.begin() as conn:
            there = set(
                conn.execute(
                    select(table.c.space_id, table.c.n).where(
                        tuple_(table.c.space_id, table.c.n).in_(keys)
                    )
                ).tuples()
            )
            new = [r for r in rows if (r["space_id"], r["n"]) not in there]
            if new:
                conn.execute(table.insert(), new)
        with source.begin() as conn:
            conn.execute(delete(table).where(tuple_(table.c.space_id, table.c.n).in_(keys)))


def alembic_config() -> Config:
    """The Alembic configuration of limner's migrations (shipped inside the package)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("limner.store") / "migrations"))
    return cfg
