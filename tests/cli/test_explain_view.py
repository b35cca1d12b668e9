"""``limner explain --view`` and ``--vertex-metadata``: a real subprocess, the real model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import limner
from limner.models import Model
from limner.samples import sample_photo

LIMNER = [sys.executable, "-m", "limner.cli.main"]
FAST = ["--segmentation", "grid", "--segments", "4", "--method", "occlusion"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIMNER, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cat_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("img") / "cat.png"
    Image.fromarray(sample_photo("chelsea")).resize((160, 120)).save(p)
    return p


def _views(out: Path, *args: str, cat: Path) -> list[Path]:
    proc = run("explain", str(cat), *FAST, "--out", str(out), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    return [Path(c["images"]["view"]) for c in result["explanations"]]


def test_view_writes_the_view_pane_next_to_the_others(
    cat_png: Path, tmp_path: Path, lite0: Model
) -> None:
    spec = "type=PIXELS,polarity=both,color_map=PINK_GREEN,overlay_type=GRAYSCALE"
    (path,) = _views(tmp_path / "a", "--view", spec, cat=cat_png)
    assert path.name.endswith("-view.png") and path.parent == tmp_path / "a" / "cat" / "occlusion"
    assert (path.parent / path.name.replace("-view", "-positive")).exists()
    written = np.asarray(Image.open(path))
    # the same view as the library draws for the same explanation
    exp = limner.explain(
        Image.open(cat_png), lite0, method="occlusion", segmentation="grid", segments=4
    )
    assert np.array_equal(written, exp.view(exp.explained_classes[0], spec))
    (other,) = _views(tmp_path / "b", "--view", "type=OUTLINES", cat=cat_png)
    assert not np.array_equal(written, np.asarray(Image.open(other)))


def test_vertex_metadata_gives_the_view(cat_png: Path, tmp_path: Path) -> None:
    meta = tmp_path / "explanation-metadata.json"
    visualization = {"type": "OUTLINES", "polarity": "BOTH", "colorMap": "RED_GREEN"}
    meta.write_text(
        json.dumps(
            {
                "explanation_metadata": {
                    "inputs": {"image": {"modality": "image", "visualization": visualization}},
                    "outputs": {"probabilities": {}},
                },
                "explanation_parameters": {"sampled_shapley_attribution": {"path_count": 10}},
            }
        )
    )
    # --method occlusion is given: it wins over the file's sampled Shapley
    (from_file,) = _views(tmp_path / "a", "--vertex-metadata", str(meta), cat=cat_png)
    spec = "type=OUTLINES,polarity=both,color_map=RED_GREEN"
    (from_flag,) = _views(tmp_path / "b", "--view", spec, cat=cat_png)
    assert np.array_equal(np.asarray(Image.open(from_file)), np.asarray(Image.open(from_flag)))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--view", "type=HEATMAP"], ["type", "PIXELS, OUTLINES"]),
        (["--view", "colour=RED"], ["unknown view setting"]),
        (["--view", "type"], ["name=value"]),
        (["--vertex-metadata", "missing.json"], ["cannot read"]),
    ],
)
def test_bad_view_options_exit_2_with_one_line(
    args: list[str], words: list[str], cat_png: Path, tmp_path: Path
) -> None:
    proc = run("explain", str(cat_png), *FAST, "--out", str(tmp_path), *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr
