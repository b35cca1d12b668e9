"""A model whose probability is a known function of one patch: every method must find it."""

from __future__ import annotations

import numpy as np
import pytest

import limner
from limner.models import CallableModel, InputSpec, ModelMetadata

METHODS = ["kernelshap", "lime", "occlusion", "rise"]


def brightness_model() -> CallableModel:
    """P(bright) = mean brightness of the top-left quarter of the 64×64 input, in [0, 1]."""
    meta = ModelMetadata(
        labels=["dark", "bright"],
        input=InputSpec(width=64, height=64, layout="NHWC", dtype="uint8", scale=1.0),
        output="probabilities",
        problem_type="binary",
        name="top-left-brightness",
    )

    def fn(x: np.ndarray) -> np.ndarray:
        p = x[:, :32, :32, :].astype(np.float64).mean(axis=(1, 2, 3)) / 255.0
        return np.stack([1 - p, p], axis=1)

    return CallableModel(fn, meta)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(40, 200, size=(128, 128, 3)).astype(np.uint8)
    img[:64, :64] = 255  # the bright patch in the top-left quarter
    return img


@pytest.mark.parametrize("method", METHODS)
def test_every_method_ranks_the_patch_first(method, image):
    model = brightness_model()
    result = limner.explain(
        image,
        model,
        method=method,
        segmentation="grid",
        segments=16,
        baseline="black",
        classes=["bright"],
        samples=300,
        seed=1,
    )
    exp = result.to_dict()["explanations"][0]
    patch = {0, 1, 4, 5}  # the 4×4 grid cells covering the top-left quarter
    ranked = [r["id"] for r in exp["regions"]]
    assert set(ranked[:4]) == patch, ranked
    assert set(exp["positive_regions"][:4]) == patch
    if method in ("kernelshap", "occlusion"):
        others = [r["weight"] for r in exp["regions"] if r["id"] not in patch]
        assert max(abs(w) for w in others) < 1e-6
        inside = [r["weight"] for r in exp["regions"] if r["id"] in patch]
        np.testing.assert_allclose(inside, 0.25, atol=1e-6)  # each cell is a quarter of the patch


def test_binary_model_explains_both_classes(image):
    result = limner.explain(
        image,
        brightness_model(),
        method="occlusion",
        segmentation="grid",
        segments=16,
        baseline="black",
    )
    d = result.to_dict()
    assert [e["label"] for e in d["explanations"]] == ["bright", "dark"]
    bright, dark = d["explanations"]
    # what raises "bright" lowers "dark" by the same amount
    wb = {r["id"]: r["weight"] for r in bright["regions"]}
    wd = {r["id"]: r["weight"] for r in dark["regions"]}
    assert all(abs(wb[i] + wd[i]) < 1e-6 for i in wb)
    assert set(dark["negative_regions"]) == {0, 1, 4, 5}
