"""`limner serve` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the CLI."""

    @app.command("serve", hidden=True)
    def _cmd() -> None:
        """Not available yet."""
        from limner.cli.common import fail

        fail("`limner serve` is not available in this version")
