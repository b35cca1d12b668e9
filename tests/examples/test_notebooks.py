"""The tutorial notebooks run top to bottom in a fresh ``python3`` kernel (this interpreter's
ipykernel), each on its own in-process service; a cell that raises fails the test."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ipykernel")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.notebooks


@pytest.fixture(autouse=True)
def _hermetic_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The kernel starts its own service (no LIMNER_URL), shows figures inline, and keeps its
    connection files in the test's folder."""
    for name in ("LIMNER_URL", "LIMNER_API_KEY", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))


def _run(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=240,
        record_timing=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, when one raises
    print(f"\n[benchmark] {name}: {time.perf_counter() - started:.1f} s ({sys.executable})")
    return nb


def _outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    return [
        o["data"][mime]
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if mime in o.get("data", {})
    ]


@pytest.mark.parametrize(
    ("name", "min_panes"),
    [("multiclass.ipynb", 8), ("binary.ipynb", 8)],
)
def test_notebook_runs_top_to_bottom(name: str, min_panes: int, tmp_path: Path) -> None:
    nb = _run(name, tmp_path)
    images = _outputs(nb, "image/png")
    assert len(images) >= min_panes  # the sample images and every explanation's panes
    tables = _outputs(nb, "text/html")
    assert any("deletion AUC" in t for t in tables)
