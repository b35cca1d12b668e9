"""Run the tutorial notebooks top to bottom and store them with their outputs.

    .venv/bin/python examples/execute.py                    # both, into examples/executed/
    .venv/bin/python examples/execute.py examples/binary.ipynb
    .venv/bin/python examples/execute.py --in-place         # rewrite the notebooks themselves

The executed copies go to an ``executed/`` folder beside each notebook (git ignores it), so
running the tutorial leaves the tracked notebooks as they are; ``--in-place`` is for whoever
updates the outputs stored in the repository. Each notebook starts its own limner service on a
free loopback port unless ``LIMNER_URL`` (and ``LIMNER_API_KEY``) name one. A cell that raises
stops the run with the cell's error and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = (HERE / "multiclass.ipynb", HERE / "binary.ipynb")


def execute(path: Path, *, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute the notebook at ``path`` in its own folder and return it with its outputs.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=list(NOTEBOOKS))
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    parser.add_argument(
        "--in-place", action="store_true", help="rewrite the notebooks instead of copies"
    )
    args = parser.parse_args(argv)
    for path in args.notebooks:
        started = time.perf_counter()
        nb = execute(path, timeout=args.timeout)
        target = path if args.in_place else executed_path(path)
        target.parent.mkdir(exist_ok=True)
        nbformat.write(nb, target)
        size = target.stat().st_size / 1e6
        print(f"{target}: {time.perf_counter() - started:.0f} s, {size:.2f} MB")
    return 0


def executed_path(path: Path) -> Path:
    """Where the executed copy of the notebook at ``path`` goes."""
    return path.parent / "executed" / path.name


if __name__ == "__main__":
    sys.exit(main())
