"""``limner keys create --space NAME``: make an API key (printed once, stored hashed)."""

from __future__ import annotations

from pathlib import Path

import typer

from limner.cli.common import err_console


def register(app: typer.Typer) -> None:
    """Add the ``keys`` commands to the CLI."""
    keys = typer.Typer(help="Manage API keys.", no_args_is_help=True)

    @keys.command("create")
    def create(
        space: str = typer.Option(
            ..., "--space", help="Space the key belongs to (created if new)."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Service data directory; env LIMNER_DATA_DIR."
        ),
        database_url: str | None = typer.Option(
            None, "--database-url", help="Database URL; env LIMNER_DATABASE_URL."
        ),
    ) -> None:
        """Create an API key and print it once; only its hash is stored."""
        from limner.cli.serve import settings_with
        from limner.store import Database, create_key

        settings = settings_with(data_dir=data_dir, database_url=database_url)
        db = Database(settings.resolved_database_url())
        try:
            db.migrate()
            token = create_key(db, space)
        finally:
            db.close()
        err_console.print(f"New API key for space [bold]{space}[/] (shown once, keep it safe):")
        print(token)

    app.add_typer(keys, name="keys")
