"""`limner datasets` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `datasets` command to the CLI."""

    @app.command("datasets", hidden=True)
    def _cmd() -> None:
        """Not available yet."""
        from limner.cli.common import fail

        fail("`limner datasets` is not available in this version")
