"""Database engine, sessions and migrations (SQLite in WAL mode, or PostgreSQL by URL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from limner.errors import InvalidInputError
from limner.store.private import FILE_MODE, private_dir, private_file


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


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

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
        """Bring the schema to the newest migration (``alembic upgrade head``)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # replicas starting together migrate in turn
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config() -> Config:
    """The Alembic configuration of limner's migrations (shipped inside the package)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("limner.store") / "migrations"))
    return cfg
