"""``limner keys create|list|revoke``: the operator's API keys (a token shown once, stored hashed).

The data dir and database are found as ``limner serve`` finds them (:func:`settings_with`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from limner.cli.common import console, err_console, fail, report_error
from limner.cli.serve import (
    DATA_DIR_HELP,
    DATABASE_HELP,
    existing_database,
    locate_store,
    settings_with,
)

if TYPE_CHECKING:
    from limner.store import Database, KeyInfo


def register(app: typer.Typer) -> None:
    """Add the ``keys`` commands to the CLI."""
    keys = typer.Typer(
        help="Manage API keys (the data dir is found as `limner serve` finds it).",
        no_args_is_help=True,
    )

    @keys.command("create")
    def create(
        space: str = typer.Option(
            ..., "--space", help="Space the key belongs to (created if new)."
        ),
        role: str = typer.Option(
            "tenant",
            "--role",
            help="viewer (reads, explains, annotates, exports), tenant (also deploys and "
            "changes its space) or admin (the operator's own).",
        ),
        admin: bool = typer.Option(False, "--admin", help="Same as --role admin."),
        name: str = typer.Option(
            "", "--name", help="Who holds the key; shown wherever the key acts."
        ),
        data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
    ) -> None:
        """Create an API key and print it once; only its hash is stored."""
        from limner.store import ROLES, Database, create_key_info

        if admin:
            role = "admin"
        if role not in ROLES:
            fail(f"--role is one of {', '.join(ROLES)}, not {role!r}")
        settings = settings_with(data_dir=data_dir, database_url=database_url)
        where = locate_store(settings)
        db = Database(settings.resolved_database_url())
        try:
            db.migrate()
            token, info = create_key_info(db, space, role=role, name=name)
            _audit(db, info, "key.create")
        finally:
            db.close()
        if not where.exists:
            report_error(
                f"there was no database at {where.database}: created one; a server started "
                "with another data dir or database will not accept this key",
                kind="warning",
            )
        err_console.print(
            f"Stored in {where.database} (data dir {where.data_dir}).",
            highlight=False,
            soft_wrap=True,
        )
        named = f" named [bold]{escape(info.name)}[/]" if info.name else ""
        err_console.print(
            f"New {role} API key{named} for space [bold]{escape(space)}[/] "
            "(shown once, keep it safe):"
        )
        print(token)

    @keys.command("list")
    def list_(
        data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
    ) -> None:
        """List every key: prefix, id, space, role, name, created, last used, revoked."""
        from limner.store import list_keys

        db = existing_database(settings_with(data_dir=data_dir, database_url=database_url))
        try:
            rows = list_keys(db)
        finally:
            db.close()
        table = Table("prefix", "id", "space", "role", "name", "created", "last used", "revoked")
        for k in rows:
            table.add_row(
                k.prefix,
                k.id,
                escape(k.space),
                k.role,
                escape(k.name),
                _when(k.created_at),
                _when(k.last_used_at),
                _when(k.revoked_at),
            )
        Console(width=max(console.width, 150)).print(table)  # ids in full, even in a pipe

    @keys.command("revoke")
    def revoke(
        key: str = typer.Argument(
            ..., help="The key itself, its prefix or its id (as `keys list` shows them)."
        ),
        data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
    ) -> None:
        """Revoke a key: requests with it get 401 from then on, its dashboard sessions and
        login links end at once."""
        from limner.store import revoke_key

        db = existing_database(settings_with(data_dir=data_dir, database_url=database_url))
        try:
            info = revoke_key(db, key)
            _audit(db, info, "key.revoke")
        finally:
            db.close()
        console.print(
            f"revoked {info.prefix}… (id {info.id}, space {info.space}, role {info.role})",
            highlight=False,
            soft_wrap=True,
        )

    app.add_typer(keys, name="keys")


def _audit(db: Database, info: KeyInfo, action: str) -> None:
    """Record an operator's key change in the key's space's audit trail."""
    from limner.store import AuditEntry, AuditLog
    from limner.store.keys import ensure_space

    space = ensure_space(db, info.space)
    AuditLog(db).append(
        space.id,
        AuditEntry(
            action=action,
            outcome="ok",
            target=info.id,
            role="operator",
            client="cli",
            detail={"key_role": info.role, "key_name": info.name, "prefix": info.prefix},
        ),
    )


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
