"""The ``limner`` command: parses arguments and calls the library; no logic of its own.

Each sub-command lives in its own module with a ``register(app)`` function.
"""

from __future__ import annotations

import sys

import typer

from limner.cli import (
    audit,
    datasets,
    demo,
    explain,
    explain_box,
    explainer,
    keys,
    kserve_explainer,
    report,
    serve,
    train,
)
from limner.cli.common import run_guarded

app = typer.Typer(
    name="limner",
    help="Explain image classifiers: which regions pushed a prediction up or down.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: Typer's Rich help shows every boolean flag as `--json <bool>`, as if it
    # took a value
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from limner import __version__

        print(f"limner {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print limner's version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Explain image classifiers: which regions pushed a prediction up or down."""


for module in (
    demo,
    serve,
    explain,
    explain_box,
    explainer,
    train,
    datasets,
    keys,
    audit,
    report,
    kserve_explainer,
):
    module.register(app)


def main() -> None:
    """Console entry point: exit 0 on success, 2 with a one-line message on bad input."""
    sys.exit(run_guarded(app))


if __name__ == "__main__":  # pragma: no cover
    main()
