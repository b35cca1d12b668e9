"""`limner keys` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `keys` command to the CLI."""

    @app.command("keys", hidden=True)
    def _cmd() -> None:
        """Not available yet."""
        from limner.cli.common import fail

        fail("`limner keys` is not available in this version")
