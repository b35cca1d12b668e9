"""Panes drawn strip by strip are the pixels of drawing them whole, by plain formulas.

The explanations are real (the built-in model); the strips are shrunk to a few rows and the
streaming PNG writer is forced, so every pane here crosses many strip boundaries. The reference
samples the working region map to the full size in one go and applies each pane's definition:
kept regions in full colour over ``0.28 × pixel + 26``; the heatmap's colour over the gray
(Pillow's ITU-R 601-2 luma, then ``0.8 × luma + 25``) with opacity ``0.75 × |weight| / max``;
the legend and the ``regions`` pane's outlines and numbers are drawn on the whole image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import limner
from limner.explain import Explanation
from limner.explain.metrics import Faithfulness
from limner.explain.result import ClassExplanation
from limner.explain.segmentation import region_map
from limner.imaging import png as png_module
from limner.imaging import strips as strips_module
from limner.imaging.annotate import regions_pane, with_legend
from limner.imaging.transform import resize_labels
from limner.models import Model
from limner.samples import sample_photo


@pytest.fixture(autouse=True)
def small_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strips_module, "STRIP_PIXELS", 20_000)  # about 30 rows
    monkeypatch.setattr(png_module, "PILLOW_MAX_PIXELS", 0)  # every pane streamed


@pytest.fixture(scope="module", params=["slic", "grid-300"])
def explanation(request: pytest.FixtureRequest, lite0: Model) -> Explanation:
    """An explanation of a 641×487 photo: a real one on SLIC regions (uint8 region ids), or 300
    grid cells (wider ids) with seeded weights, since 300 regions take 600 model evaluations."""
    photo = Image.fromarray(sample_photo("chelsea")).resize((641, 487), Image.Resampling.BICUBIC)
    if request.param == "slic":
        return limner.explain(photo, lite0, samples=64, top_k=2)
    rgb = np.asarray(photo)
    regions = region_map(rgb, "grid", 300)
    weights = np.random.default_rng(0).normal(size=regions.count)
    weights[:40] = 0.0  # neutral regions: in neither pane
    none = Faithfulness(0.0, 0.0, [], [], [], [])
    c = ClassExplanation("cat", 7, 0.5, 0.0, 1.0, weights, regions.count, none)
    return Explanation(rgb, regions, "m", "kernelshap", 0, "blur", 64, 64, 0.0, [], [c])


def _reference(exp: Explanation, class_index: int, kind: str) -> np.ndarray:
    image = exp.image.astype(np.int64)
    labels = resize_labels(exp.regions.labels, exp.width, exp.height)
    c = exp.for_class(class_index)
    if kind in ("positive", "negative"):
        ids = c.positive_regions if kind == "positive" else c.negative_regions
        dim = np.clip(image * 0.28 + 26, 0, 255).astype(np.uint8)
        return np.where(np.isin(labels, ids)[..., None], exp.image, dim)
    if kind == "regions":  # outlines and numbers: the whole-image drawing
        return regions_pane(exp.image, labels, exp.regions.boxes_and_areas[0])
    t = c.weights / (np.abs(c.weights).max() or 1.0)
    colour = np.where(t[:, None] >= 0, [214, 39, 40], [31, 119, 180])[labels]
    alpha = np.round(np.abs(t) * 0.75 * 255).astype(np.int64)[labels][..., None]
    luma = np.asarray(Image.fromarray(exp.image).convert("L")).astype(np.int64)
    gray = (luma * 0.8 + 25).astype(np.int64)[..., None]
    heat = np.round((colour * alpha + gray * (255 - alpha)) / 255).astype(np.uint8)
    return with_legend(heat, float(np.abs(c.weights).max()))  # the whole-image legend


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_labels_map_is_the_working_map_sampled_to_full_size(explanation: Explanation) -> None:
    full = resize_labels(explanation.regions.labels, explanation.width, explanation.height)
    assert np.array_equal(explanation.labels_map, full)
    assert explanation.labels_map.dtype == (
        np.uint8 if explanation.regions.count <= 256 else np.intp
    )


@pytest.mark.parametrize("kind", ["positive", "negative", "heatmap", "regions"])
def test_pngs_and_arrays_are_the_reference_pixels(explanation: Explanation, kind: str) -> None:
    for ci in explanation.explained_classes:
        expected = _reference(explanation, ci, kind)
        assert np.array_equal(_pixels(explanation.png(ci, kind)), expected)
        assert np.array_equal(explanation.pane(ci, kind), expected)


def test_saved_panes_are_the_reference_pixels(explanation: Explanation, tmp_path: Path) -> None:
    explanation.save(tmp_path)
    for ci in explanation.explained_classes:
        for kind in ("positive", "negative", "heatmap", "regions"):
            data = (tmp_path / explanation.file_name(ci, kind)).read_bytes()
            assert np.array_equal(_pixels(data), _reference(explanation, ci, kind))


def test_the_regions_pane_is_drawn_once_for_all_classes(explanation: Explanation) -> None:
    first = explanation.explained_classes[0]
    pairs = dict(explanation.pane_keys())
    assert set(pairs) == {
        (ci, kind) for ci in explanation.explained_classes for kind in explanation.pane_kinds
    }
    for (ci, kind), source in pairs.items():
        assert source == ((first, kind) if kind in ("regions", "labels") else (ci, kind))
