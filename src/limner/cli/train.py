"""`limner train` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `train` command to the CLI."""

    @app.command("train", hidden=True)
    def _cmd() -> None:
        """Not available yet."""
        from limner.cli.common import fail

        fail("`limner train` is not available in this version")
