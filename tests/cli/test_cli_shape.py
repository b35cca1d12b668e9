"""The CLI's and the library's shape: flags shown as flags, ``--version``, ``show()``, ``repr``."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

import limner
from patch_models import brightness_model

LIMNER = [sys.executable, "-m", "limner.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIMNER, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("command", "flag"),
    [(["explain"], "--json"), (["demo"], "--serve"), (["datasets", "shapes"], "--overwrite")],
)
def test_help_shows_boolean_flags_without_a_value(command, flag):
    proc = run(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith(flag))
    assert "<bool>" not in proc.stdout and "bool" not in line
    assert "<int>" in proc.stdout or "<str>" in proc.stdout or "<path>" in proc.stdout


def test_version():
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"limner {limner.__version__}"


@pytest.fixture(scope="module")
def explanation() -> limner.Explanation:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 120, size=(300, 200, 3)).astype(np.uint8)
    image[:150, :100] = 250
    return limner.explain(
        image, brightness_model(32), segmentation="grid", segments=4, samples=16, classes=["bright"]
    )


def test_library_explanation_shows_the_three_panes(explanation):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = explanation.show()
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["image", "bright: positive", "negative"]
        shown = fig.axes[1].get_images()[0].get_array()
        assert np.array_equal(np.asarray(shown), explanation.pane(1, "positive"))
        assert "bright" in fig._suptitle.get_text() and "kernelshap" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_library_explanation_repr_is_short(explanation):
    text = repr(explanation)
    assert len(text) < 200 and "\n" not in text
    assert "200×300" in text and "bright" in text and "kernelshap" in text
    assert "array" not in text


@pytest.mark.parametrize("size", [(1200, 300), (300, 1200), (2, 2)])
def test_show_keeps_titles_apart_at_any_aspect(size):
    """A tall photo's title does not overlap the pane titles; a tiny image is drawn as pixels."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from limner.imaging.figure import show_panes

    h, w = size
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(h, w, 3)).astype(np.uint8)
    fig = show_panes(
        image,
        image,
        image,
        label="cat",
        probability=0.9,
        method="kernelshap",
        notes=["fit R² 0.91 · top regions settled", "warning: something to say"],
    )
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        top = fig._suptitle.get_window_extent(renderer)
        notes = fig._supxlabel.get_window_extent(renderer)
        for ax in fig.axes:
            title = ax.title.get_window_extent(renderer)
            assert not top.overlaps(title)
            assert not ax.get_window_extent(renderer).overlaps(top)
            assert not ax.get_window_extent(renderer).overlaps(notes)
        if max(size) < 64:
            assert fig.axes[0].get_images()[0].get_interpolation() == "nearest"
    finally:
        plt.close(fig)
