"""Attribution maps for every method (``Explanation.attribution_map``) and the region label map
as a lossless ``labels`` pane, rebuilt from a RESULT alone as a REST user would."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import limner
from limner.errors import InvalidInputError
from limner.explain import Explanation
from limner.explain.metrics import Faithfulness
from limner.explain.result import ClassExplanation
from limner.explain.segmentation import region_map
from limner.imaging import strips as strips_module
from limner.models import InputSpec, ModelMetadata
from limner.models.pytorch import TorchModel
from patch_models import brightness_model, patch_image

GRID = {"segmentation": "grid", "segments": 4}


def _labels_of(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode.startswith("I")  # 16-bit grayscale, not a picture
    return np.asarray(image).astype(np.int64)


def _from_result(entry: dict, labels: np.ndarray) -> np.ndarray:
    """What a REST user does: paint the RESULT's region weights over the labels pane."""
    weights = np.zeros(len(entry["regions"]))
    for r in entry["regions"]:
        weights[r["id"]] = r["weight"]
    return weights[labels]


def _tiny_cnn() -> TorchModel:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    )  # fmt: skip
    meta = ModelMetadata(
        labels=["a", "b"], input=InputSpec(width=32, height=32, layout="NCHW"), output="logits"
    )
    return TorchModel(net, meta)


@pytest.fixture(scope="module")
def shap() -> Explanation:
    image = np.asarray(Image.fromarray(patch_image()).resize((90, 70)))
    return limner.explain(image, brightness_model(64), samples=64, top_k=2, **GRID)


def test_a_region_method_paints_each_weight_over_its_region(shap: Explanation) -> None:
    for c in shap.classes:
        full = shap.attribution_map(class_index=c.class_index)
        assert full.shape == (70, 90) and full.dtype == np.float32
        assert np.array_equal(full, c.weights.astype(np.float32)[shap.labels_map])
        small = shap.attribution_map(32, 48, class_index=c.class_index)
        assert np.array_equal(small, c.weights.astype(np.float32)[shap.regions.at_size(48, 32)])
    # the first explained class by default, and the two classes' maps differ
    first, second = shap.explained_classes
    assert np.array_equal(shap.attribution_map(), shap.attribution_map(class_index=first))
    assert not np.array_equal(shap.attribution_map(class_index=second), shap.attribution_map())


def test_attribution_map_refuses_bad_sizes_and_classes(shap: Explanation) -> None:
    with pytest.raises(InvalidInputError):
        shap.attribution_map(0, 10)
    with pytest.raises(InvalidInputError):
        shap.attribution_map(100_000, 100_000)
    with pytest.raises(KeyError):
        shap.attribution_map(class_index=7)


@pytest.mark.parametrize("method", ["integrated-gradients", "gradcam"])
def test_a_gradient_method_resamples_its_pixel_map(method: str) -> None:
    exp = limner.explain(patch_image(), _tiny_cnn(), method=method, **GRID)
    c = exp.classes[0]
    at_model = exp.attribution_map(32, 32)
    assert np.allclose(at_model, exp.saliency[c.class_index], atol=1e-6)
    # the region weights are the map's sums over the regions at the model's size
    sums = np.bincount(exp.regions.at_size(32, 32).ravel(), at_model.ravel().astype(np.float64))
    assert np.allclose(sums, c.weights, atol=1e-5)
    full = exp.attribution_map()
    assert full.shape == (128, 128) and np.isfinite(full).all() and np.ptp(full) > 0


def test_the_labels_pane_is_in_the_result_and_lossless(shap: Explanation, tmp_path: Path) -> None:
    result = shap.to_dict()
    refs = {e["images"]["labels"] for e in result["explanations"]}
    assert len(refs) == 2  # one file name per class, the same picture (drawn once, copied)
    first, second = shap.explained_classes
    assert dict(shap.pane_keys())[(second, "labels")] == (first, "labels")
    labels = _labels_of(shap.png(first, "labels"))
    assert np.array_equal(labels, shap.labels_map)
    assert np.array_equal(shap.pane(first, "labels"), shap.labels_map)
    saved = shap.save(tmp_path)
    doc = json.loads((saved / "result.json").read_text())
    for entry in doc["explanations"]:
        from_disk = _labels_of((saved / entry["images"]["labels"]).read_bytes())
        rebuilt = _from_result(entry, from_disk)
        assert np.allclose(rebuilt, shap.attribution_map(class_index=entry["class_index"]))


def test_a_large_label_map_streams_across_strips_with_wide_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(strips_module, "STRIP_PIXELS", 20_000)  # about 30 rows a strip
    rgb = np.random.default_rng(0).integers(0, 255, size=(487, 641, 3)).astype(np.uint8)
    regions = region_map(rgb, "grid", 300)  # ids above 255
    weights = np.random.default_rng(1).normal(size=regions.count)
    none = Faithfulness(0.0, 0.0, [], [], [], [])
    c = ClassExplanation("cat", 7, 0.5, 0.0, 1.0, weights, regions.count, none)
    exp = Explanation(rgb, regions, "m", "kernelshap", 0, "blur", 64, 64, 0.0, [], [c])
    labels = _labels_of(exp.png(7, "labels"))
    assert labels.max() == regions.count - 1 > 255
    assert np.array_equal(labels, regions.original)
    buf = io.BytesIO()
    exp.write_png(7, "labels", buf)
    assert buf.getvalue() == exp.png(7, "labels")
    assert np.allclose(
        _from_result(exp.to_dict()["explanations"][0], labels), exp.attribution_map()
    )
