"""`limner demo` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `demo` command to the CLI."""

    @app.command("demo", hidden=True)
    def _cmd() -> None:
        """Not available yet."""
        from limner.cli.common import fail

        fail("`limner demo` is not available in this version")
