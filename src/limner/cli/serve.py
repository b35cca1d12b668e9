"""``limner serve``: run the REST service."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from limner.cli.common import err_console
from limner.settings import Settings

if TYPE_CHECKING:
    from limner.store import Database


def settings_with(**overrides: Any) -> Settings:
    """Settings from the environment, with the options given on the command line on top.

    ``serve`` and ``keys`` find the data dir (and database) by this one rule: the command-line
    option, else ``LIMNER_DATA_DIR`` (``LIMNER_DATABASE_URL``), else ``./limner-data``.
    """
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class StoreLocation:
    """Where the service's data live, as the operator should see it."""

    data_dir: Path
    database: str
    exists: bool


def locate_store(settings: Settings) -> StoreLocation:
    """The absolute data dir, the database URL (password hidden) and whether it exists yet."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url())
    data_dir = settings.data_dir.resolve()
    shown = url.render_as_string(hide_password=True)
    exists = True
    if url.get_backend_name() == "sqlite":
        # the file the URL names (relative paths from the working directory), wherever it is
        file = url.database or ""
        exists = file not in ("", ":memory:") and Path(file).exists()
    return StoreLocation(data_dir, shown, exists)


#: Help of the ``--data-dir`` and ``--database-url`` options of the commands that read the
#: service's database (``keys``, ``audit``).
DATA_DIR_HELP = "Service data directory; else env LIMNER_DATA_DIR, else ./limner-data."
DATABASE_HELP = "Database URL; else env LIMNER_DATABASE_URL, else SQLite in the data dir."


def existing_database(settings: Settings) -> Database:
    """The migrated database of ``settings``; exit 2 when there is none (nothing is created)."""
    from limner.cli.common import fail
    from limner.store import Database

    where = locate_store(settings)
    if not where.exists:
        fail(
            f"no limner database in {where.data_dir}: give the server's --data-dir "
            "(or LIMNER_DATA_DIR)"
        )
    db = Database(settings.resolved_database_url())
    db.migrate()
    return db


def ensure_first_key(settings: Settings) -> str | None:
    """Migrate the database; when it has no API key yet, create one for space ``default``.

    That key is the operator's own: it has the ``admin`` role."""
    from limner.store import Database, count_keys, create_key

    db = Database(settings.resolved_database_url())
    try:
        db.migrate()
        return create_key(db, "default", role="admin") if count_keys(db) == 0 else None
    finally:
        db.close()


def check_port_free(host: str, port: int, what: str) -> None:
    """Fail with one line when ``host:port`` cannot be listened on (taken, or not an address)."""
    listen_socket(host, port, what).close()


def listen_socket(host: str, port: int, what: str) -> socket.socket:
    """A socket bound to ``host:port`` (one line, exit 2, when the port is taken or the address
    is not one of this machine's): bound before anything says the server serves, and handed to
    the server as it is, so no other process can take the port in between."""
    from limner.errors import InvalidInputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInputError(f"{what} cannot listen on {host}:{port} ({reason})") from exc
    return sock


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the CLI."""

    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on."),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Database, images and models; env LIMNER_DATA_DIR."
        ),
        database_url: str | None = typer.Option(
            None, "--database-url", help="SQLAlchemy URL; env LIMNER_DATABASE_URL."
        ),
        workers: int | None = typer.Option(
            None, "--workers", min=1, help="Explanation jobs run at once; env LIMNER_WORKERS."
        ),
        grpc_port: int | None = typer.Option(
            None,
            "--grpc-port",
            min=1,
            max=65535,
            help="Also serve Open Inference over gRPC on this port (on --host); "
            "env LIMNER_GRPC_PORT. Default: no gRPC.",
        ),
    ) -> None:
        """Run the REST service (the first start creates an API key for space 'default')."""
        import uvicorn

        from limner.service import create_app

        os.umask(0o077)  # everything the server writes is its user's alone
        settings = settings_with(
            data_dir=data_dir,
            database_url=database_url,
            workers=workers,
            grpc_port=grpc_port,
            grpc_host=host,
        )
        sock = listen_socket(host, port, "limner")
        if grpc_port is not None:
            check_port_free(host, grpc_port, "gRPC")
        where = locate_store(settings)
        err_console.print(
            f"data dir {where.data_dir}, database {where.database}"
            + ("" if where.exists else " (new)"),
            highlight=False,
            soft_wrap=True,
        )
        token = ensure_first_key(settings)
        if token is not None:
            err_console.print(
                "First start: created an admin API key for space [bold]default[/] "
                "(shown once, keep it safe):"
            )
            print(token, flush=True)
        port = sock.getsockname()[1]
        err_console.print(
            f"limner serving on http://{host}:{port} — API docs /docs, dashboard /ui"
            + (f"; gRPC on {host}:{settings.grpc_port}" if settings.grpc_port else ""),
            highlight=False,
        )
        config = uvicorn.Config(create_app(settings), log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
