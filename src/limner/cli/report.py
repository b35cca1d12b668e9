"""``limner report``: save the report of explanations from a running limner service."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from limner.cli.common import err_console


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the CLI."""

    @app.command("report")
    def report(
        explanations: list[str] = typer.Argument(
            ..., help="Explanation ids (one report holds them all, at most 50)."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="File to write (.pdf or .html)."),
        fmt: str | None = typer.Option(
            None, "--format", help="pdf or html; default: from --out's suffix, else pdf."
        ),
        url: str | None = typer.Option(
            None, "--url", help="The limner service; else env LIMNER_URL, else 127.0.0.1:8080."
        ),
        title: str | None = typer.Option(None, "--title", help="The report's title."),
    ) -> None:
        """Save a report of explanations (panes, region table, faithfulness, the model's
        SHA-256, who asked, annotations) as PDF or self-contained HTML. The key comes from
        LIMNER_API_KEY; every export is recorded in the space's audit trail."""
        from limner.client import APIClient
        from limner.errors import InvalidInputError

        chosen = fmt or (out.suffix.lstrip(".").lower() if out.suffix else "pdf")
        if chosen not in ("pdf", "html"):
            raise InvalidInputError(f"--format is pdf or html, not {chosen!r}")
        base = url or os.environ.get("LIMNER_URL") or "http://127.0.0.1:8080"
        with APIClient(base) as client:
            if len(explanations) == 1 and title is None:
                client.explanations.get(explanations[0]).report(out, format=chosen)
            else:
                client.reports.save(explanations, out, format=chosen, title=title)
        size = out.stat().st_size
        err_console.print(f"wrote {out} ({size / 1e3:.0f} kB)", highlight=False, soft_wrap=True)
