"""The default method's 90% intervals cover the exact Shapley values (brute force) often enough.

A small random convolutional network on 32×32 inputs stands in for a classifier so that 20 seeds
× 2 grids × 2 photos stay fast; the photos are real and the model is non-linear (ReLU features,
softmax), so the regions interact and KernelSHAP's sampled estimate is not exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import limner
from limner.explain.perturb import Perturber
from limner.explain.segmentation import grid_labels
from limner.imaging import resize
from limner.models import InputSpec, ModelMetadata
from limner.models.base import CallableModel
from limner.samples import sample_photo

SIZE = 32


def _tiny_net(seed: int = 3) -> CallableModel:
    rng = np.random.default_rng(seed)
    k1 = rng.normal(0, 1.0, (5, 5, 3, 12))
    w2 = rng.normal(0, 1.0, (12 * 16, 6))

    def forward(tensor: np.ndarray) -> np.ndarray:
        x = tensor.transpose(0, 2, 3, 1) - 0.5  # model-ready NCHW in [0, 1] → NHWC around 0
        n = len(x)
        win = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(1, 2))  # n,28,28,3,5,5
        conv = np.einsum("nhwcij,ijcf->nhwf", win, k1, optimize=True)  # BLAS, not C loops
        feat = np.maximum(conv, 0.0)  # n,28,28,12
        pooled = feat[:, :28, :28].reshape(n, 4, 7, 4, 7, 12).mean(axis=(2, 4))  # n,4,4,12
        logits = pooled.reshape(n, -1) @ w2
        return logits

    meta = ModelMetadata(
        labels=[f"c{i}" for i in range(6)],
        input=InputSpec(width=SIZE, height=SIZE),
        output="logits",
        name="tiny-random-cnn",
    )
    return CallableModel(forward, meta)


def _brute_force_shapley(model: CallableModel, photo: np.ndarray, cells: int, c: int):
    labels = grid_labels(SIZE, SIZE, cells)
    pert = Perturber(photo, labels, "gray", cells)
    coalitions = (np.arange(2**cells)[:, None] >> np.arange(cells)[None, :] & 1).astype(bool)
    v = model.predict(pert.regions(coalitions))[:, c].astype(np.float64)
    size = coalitions.sum(axis=1)
    fact = [math.factorial(k) for k in range(cells + 1)]
    phi = np.zeros(cells)
    idx = np.arange(2**cells)
    for i in range(cells):
        without = idx[~coalitions[:, i]]
        s = size[without]
        w = np.array([fact[k] * fact[cells - k - 1] / fact[cells] for k in s])
        phi[i] = np.sum(w * (v[without | (1 << i)] - v[without]))
    return phi


@pytest.mark.slow
@pytest.mark.parametrize("ties", [{}, {"tie_tolerance": 0.2}], ids=["default", "ties-0.2"])
def test_default_intervals_cover_exact_shapley_values(ties):
    """Deterministic: every draw comes from the seed and the model is plain numpy. With ties
    at 0.2 every explanation stops early (``settled``), which is where intervals can fail."""
    model = _tiny_net()
    inside = total = 0
    for name in ("chelsea", "coffee"):
        photo = resize(sample_photo(name), SIZE, SIZE)
        for cells in (8, 10):
            c = int(model.predict(photo[None])[0].argmax())
            exact = _brute_force_shapley(model, photo, cells, c)
            for seed in range(12):
                exp = limner.explain(
                    photo,
                    model,
                    segmentation="grid",
                    segments=cells,
                    baseline="gray",
                    classes=[c],
                    seed=seed,
                    **ties,
                ).to_dict()
                assert exp["method"] == "kernelshap" and exp["stop_reason"] != "exact"
                for r in exp["explanations"][0]["regions"]:
                    lo, hi = r["interval"]
                    inside += lo <= exact[r["id"]] <= hi
                    total += 1
    coverage = inside / total
    assert coverage >= 0.85, coverage
