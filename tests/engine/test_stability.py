"""Reproducibility (same seed, same RESULT) and stability across seeds on the bundled photos."""

from __future__ import annotations

import numpy as np
import pytest

import limner
from limner.samples import SAMPLE_PHOTOS, sample_photo


def _without_time(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "seconds"}


@pytest.mark.parametrize("method", ["kernelshap", "lime", "rise"])
def test_same_seed_same_result(lite0, method):
    photo = sample_photo("coffee")
    a = limner.explain(photo, lite0, method=method, samples=120, seed=7)
    b = limner.explain(photo, lite0, method=method, samples=120, seed=7)
    assert _without_time(a.to_dict()) == _without_time(b.to_dict())
    assert np.array_equal(a.classes[0].weights, b.classes[0].weights)
    assert np.array_equal(
        a.png(a.explained_classes[0], "heatmap"), b.png(b.explained_classes[0], "heatmap")
    )
    c = limner.explain(photo, lite0, method=method, samples=120, seed=8)
    assert not np.array_equal(a.classes[0].weights, c.classes[0].weights)


#: The default on every bundled photo; LIME (a thousand samples a run) on two of them.
STABILITY_CASES = [("kernelshap", name) for name in SAMPLE_PHOTOS] + [
    ("lime", name) for name in ("chelsea", "coffee")
]


@pytest.mark.parametrize(("method", "name"), STABILITY_CASES)
def test_top3_positive_regions_are_stable_across_seeds(lite0, method, name):
    photo = sample_photo(name)
    tops = []
    for seed in (0, 1):
        exp = limner.explain(photo, lite0, method=method, seed=seed).to_dict()["explanations"][0]
        tops.append(set(exp["positive_regions"][:3]))
    assert len(tops[0] & tops[1]) >= 2, tops
