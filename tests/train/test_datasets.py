"""``limner datasets shapes``: layout, masks, determinism and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from limner.datasets import SHAPES, draw_shape, make_shapes, read_mask
from limner.errors import InvalidInputError


def test_layout_counts_and_masks(shapes_dir: Path) -> None:
    for split, n in (("train", 160), ("validation", 40)):
        for name in ("circle", "square"):
            files = sorted((shapes_dir / split / name).glob("*.png"))
            assert len(files) == n
            masks = sorted((shapes_dir / "masks" / split / name).glob("*.png"))
            assert [m.name for m in masks] == [f.name for f in files]
    first = next((shapes_dir / "validation" / "circle").glob("*.png"))
    image = np.asarray(Image.open(first))
    mask = read_mask(first, shapes_dir)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert mask.shape == (96, 96) and 0.05 < mask.mean() < 0.4


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_has_a_fair_sized_mask(shape: str) -> None:
    sample = draw_shape(np.random.default_rng(3), shape, 64)
    assert sample.image.shape == (64, 64, 3)
    # the shape lies inside the image, away from the border
    ys, xs = np.nonzero(sample.mask)
    assert ys.min() > 0 and xs.min() > 0 and ys.max() < 63 and xs.max() < 63
    assert 0.05 < sample.mask.mean() < 0.35


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = make_shapes(tmp_path / "a", per_class=4, size=32, classes=["star", "cross"], seed=7)
    make_shapes(tmp_path / "b", per_class=4, size=32, classes=["star", "cross"], seed=7)
    make_shapes(tmp_path / "c", per_class=4, size=32, classes=["star", "cross"], seed=8)
    rel = Path("train/star/star_0000.png")
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()
    assert a.counts == {"train": {"star": 3, "cross": 3}, "validation": {"star": 1, "cross": 1}}


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown shape"):
        make_shapes(tmp_path / "x", classes=["circle", "blob"])
    with pytest.raises(InvalidInputError, match="at least two"):
        make_shapes(tmp_path / "x", classes=["circle"])
    make_shapes(tmp_path / "y", per_class=2, size=32, classes=["circle", "square"])
    with pytest.raises(InvalidInputError, match="not empty"):
        make_shapes(tmp_path / "y", per_class=2, size=32, classes=["circle", "square"])
    make_shapes(tmp_path / "y", per_class=2, size=32, classes=["circle", "star"], overwrite=True)
    assert sorted(p.name for p in (tmp_path / "y" / "train").iterdir()) == ["circle", "star"]


def test_cli(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "limner.cli.main", "datasets", "shapes"]
    ok = subprocess.run(
        [*cli, str(tmp_path / "d"), "--per-class", "3", "--size", "32", "--classes", "circle,star"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "d" / "masks").rglob("*.png"))) == 6
    bad = subprocess.run([*cli, str(tmp_path / "d")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "not empty" in bad.stderr


def test_plain_preset_one_size_per_class_plain_high_contrast(tmp_path: Path) -> None:
    summary = make_shapes(
        tmp_path / "p", per_class=6, size=64, classes=["circle", "square"], seed=2, preset="plain"
    )
    assert summary.preset == "plain"
    assert json.loads((tmp_path / "p" / "dataset.json").read_text())["preset"] == "plain"
    areas: dict[str, list[float]] = {}
    for image_path in sorted((tmp_path / "p" / "train").rglob("*.png")):
        image = np.asarray(Image.open(image_path)).astype(np.float64)
        mask = read_mask(image_path, tmp_path / "p")
        areas.setdefault(image_path.parent.name, []).append(mask.mean())
        outside = image[~mask]
        inside = image[mask]
        border = image[0]  # a plain background: the top row is one colour
        assert np.ptp(border, axis=0).max() == 0
        assert np.abs(outside.mean(axis=0) - inside.mean(axis=0)).sum() > 300  # high contrast
    assert max(areas["circle"]) * 2 < min(areas["square"])  # each class at its own size


def test_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="preset"):
        make_shapes(tmp_path / "x", classes=["circle", "square"], preset="easy")
