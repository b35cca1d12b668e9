"""Shared CLI plumbing: error handling, progress bars, console."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from limner.errors import LimnerError

console = Console()
err_console = Console(stderr=True)


def report_error(message: str, *, kind: str = "error") -> None:
    """Print ``message`` as one ``limner: error:`` (or ``limner: {kind}:``) line on stderr."""
    line = " ".join(str(message).split())
    print(f"limner: {kind}: {line}", file=sys.stderr)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    report_error(message)
    raise SystemExit(code)


def run_guarded(app: typer.Typer) -> int:
    """Run the Typer app; map limner and usage errors to exit code 2 and one stderr line.

    Unexpected errors print one line too (exit 1); ``LIMNER_DEBUG=1`` shows the traceback.
    """
    try:
        # without standalone mode, click hands back the code of a ``typer.Exit`` as the value
        code = app(standalone_mode=False)
    except LimnerError as exc:
        fail(exc.message, 2 if exc.status < 500 else 1)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        fail("aborted", 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        if type(exc).__name__ in ("NoArgsIsHelp", "NoArgsIsHelpError"):
            return 0
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click usage errors
            fail(exc.format_message(), 2)
        if os.environ.get("LIMNER_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (set LIMNER_DEBUG=1 for details)", 1)
    return code if isinstance(code, int) else 0


@contextmanager
def terminal_progress() -> Iterator[Progress | None]:
    """limner's Rich progress display while stderr is a terminal; ``None`` otherwise."""
    if not err_console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        yield progress


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A Rich progress bar on a terminal, nothing otherwise. Yields ``update(done, total)``."""
    with terminal_progress() as progress:
        if progress is None:
            yield lambda done, total=None: None
            return
        task = progress.add_task(description, total=total)

        def update(done: int, total: int | None = None) -> None:
            progress.update(task, completed=done, total=total)

        yield update
