"""``limner audit export|verify``: a space's hash-chained audit trail, read from the database.

The data dir and database are found as ``limner serve`` finds them (:func:`settings_with`);
neither command creates a database. ``verify`` exits 0 when the chain holds, 1 naming the first
broken record, 2 for usage errors (unknown space, no database).
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer

from limner.cli.common import fail, progress_bar
from limner.cli.serve import DATA_DIR_HELP, DATABASE_HELP, existing_database, settings_with

if TYPE_CHECKING:
    from limner.store import Database

_SPACE_HELP = "The space whose trail to read (its name, as `limner keys list` shows it)."

#: Exports with more records than this show a progress bar (on stderr, on a terminal only).
PROGRESS_FROM = 10_000


def register(app: typer.Typer) -> None:
    """Add the ``audit`` commands to the CLI."""
    audit = typer.Typer(
        help="Export or verify a space's audit trail (the data dir is found as `limner serve` "
        "finds it).",
        no_args_is_help=True,
    )

    @audit.command("export")
    def export(
        space: str = typer.Option(..., "--space", help=_SPACE_HELP),
        out: Path | None = typer.Option(
            None, "--out", help="Write to this file instead of stdout.", dir_okay=False
        ),
        data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
    ) -> None:
        """Write every record of the space, oldest first, as JSON Lines (one record a line,
        with its hash and the previous record's hash)."""
        db = existing_database(settings_with(data_dir=data_dir, database_url=database_url))
        try:
            space_id = _space_id(db, space)
            if out is None:
                _write(db, space_id, sys.stdout)
            else:
                with out.open("w", encoding="utf-8") as f:
                    _write(db, space_id, f)
        finally:
            db.close()

    @audit.command("verify")
    def verify(
        space: str = typer.Option(..., "--space", help=_SPACE_HELP),
        data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
    ) -> None:
        """Check the space's chain record by record; exit 0 when it holds, 1 naming the first
        broken record."""
        from limner.store.audit import verify as check

        db = existing_database(settings_with(data_dir=data_dir, database_url=database_url))
        try:
            verdict = check(db, _space_id(db, space))
        finally:
            db.close()
        if verdict.ok:
            print(f"ok: the audit trail of space {space!r} holds ({verdict.checked} records)")
            return
        print(
            f"broken: record {verdict.broken_n} of space {space!r}: {verdict.reason} "
            f"({verdict.checked} records before it hold)"
        )
        raise typer.Exit(1)

    app.add_typer(audit, name="audit")


def _write(db: Database, space_id: str, stream: TextIO) -> None:
    """Every record of ``space_id`` as JSON Lines on ``stream``."""
    from limner.store.audit import count, export

    total = count(db, space_id)
    bar = progress_bar("exporting", total) if total > PROGRESS_FROM else nullcontext(None)
    with bar as update:
        for done, record in enumerate(export(db, space_id), start=1):
            stream.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
            if update is not None and done % 1000 == 0:
                update(done, total)
    stream.flush()


def _space_id(db: Database, name: str) -> str:
    """The id of the space called ``name``; exit 2 when there is none."""
    from sqlalchemy import select

    from limner.store import Space

    with db.session() as s:
        space_id = s.scalar(select(Space.id).where(Space.name == name.strip()))
    if space_id is None:
        db.close()
        fail(f"no space {name!r} in this database (`limner keys list` shows the spaces)")
    return space_id
