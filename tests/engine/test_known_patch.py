"""A model whose probability is a known function of one patch: every method must find it."""

from __future__ import annotations

import numpy as np
import pytest

import limner
from patch_models import brightness_model, patch_image

METHODS = ["kernelshap", "lime", "occlusion", "rise"]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return patch_image()


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
