"""The tutorial notebooks run top to bottom in a fresh ``python3`` kernel (this interpreter's
ipykernel), each on its own in-process service; a cell that raises fails the test."""

from __future__ import annotations

import json
import re
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
    """The kernel ``python3`` is this interpreter (a kernelspec first on JUPYTER_PATH, ahead of
    any user-level one); it starts its own service (no LIMNER_URL), shows figures inline, and
    keeps its connection files in the test's folder."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (limner tests)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    for name in ("LIMNER_URL", "LIMNER_API_KEY", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)


def _run(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys; print(sys.executable)")
    nb.cells.insert(0, probe)  # which interpreter the kernel runs (the copy is never saved)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=240,
        record_timing=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, when one raises
    print(f"\n[benchmark] {name}: {time.perf_counter() - started:.1f} s")
    assert probe.outputs[0]["text"].strip() == sys.executable
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
    ("name", "figures"),
    [
        ("multiclass.ipynb", 1 + 8),  # the training samples; 8 images' panes
        ("binary.ipynb", 2 * 2 * 2),  # 2 images x 2 models x both classes
    ],
)
def test_notebook_runs_top_to_bottom(name: str, figures: int, tmp_path: Path) -> None:
    nb = _run(name, tmp_path)
    assert len(_outputs(nb, "image/png")) == figures  # each figure shown once
    tables = _outputs(nb, "text/html")
    assert any("deletion AUC" in t for t in tables)
    if name == "binary.ipynb":  # the classic Keras network learns the tutorial's data set
        printed = "".join(
            o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
        )
        found = re.search(r"model B, validation accuracy: ([\d.]+)", printed)
        assert found is not None and float(found.group(1)) >= 0.9, printed


def test_running_the_tutorial_leaves_the_tracked_notebooks_alone(tmp_path: Path) -> None:
    """``examples/execute.py`` writes executed copies beside the notebooks, not over them."""
    sys.path.insert(0, str(EXAMPLES))
    import execute

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    assert execute.main([str(path), "--timeout", "60"]) == 0
    assert path.read_bytes() == before
    done = nbformat.read(execute.executed_path(path), as_version=4)
    assert done.cells[0].outputs[0]["text"].strip() == "42"
