"""Run the tutorial notebooks top to bottom and store them with their outputs.

    .venv/bin/python examples/execute.py                    # both notebooks, in place
    .venv/bin/python examples/execute.py examples/binary.ipynb

Each notebook starts its own limner service on a free loopback port unless ``LIMNER_URL`` (and
``LIMNER_API_KEY``) name one. A cell that raises stops the run with the cell's error and leaves
the file unchanged.
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
    args = parser.parse_args(argv)
    for path in args.notebooks:
        started = time.perf_counter()
        nb = execute(path, timeout=args.timeout)
        nbformat.write(nb, path)
        size = path.stat().st_size / 1e6
        print(f"{path.name}: {time.perf_counter() - started:.0f} s, {size:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
