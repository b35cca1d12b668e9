"""The random-order reference AUCs beside each class's deletion and insertion AUC: exact for few
regions, reproducible for a seed, below a real ranking's insertion AUC and above its deletion AUC,
and given by every method that draws curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import limner
from limner.explain.metrics import (
    RANDOM_ORDERS,
    random_orders,
    random_reference,
    reference_steps,
)
from limner.models import InputSpec, ModelMetadata
from limner.models.pytorch import TorchModel
from limner.samples import sample_photo
from patch_models import brightness_model, patch_image


def test_exact_expectation_for_few_regions():
    """On 2×2 cells with a black baseline the brightness model sees only the top-left cell, so
    along a uniformly random order the expected probability falls linearly from f(image) to
    f(baseline): the reference is their mean, exactly (every order of 4 regions is taken)."""
    result = limner.explain(
        patch_image(),
        brightness_model(),
        segmentation="grid",
        segments=4,
        baseline="black",
        classes=["bright"],
    )
    c = result.to_dict()["explanations"][0]
    expected = (c["probability"] + c["intercept"]) / 2
    assert result.stop_reason == "exact"
    assert c["random_deletion_auc"] == pytest.approx(expected, abs=1e-9)
    assert c["random_insertion_auc"] == pytest.approx(expected, abs=1e-9)
    # the ranking puts the one cell that matters first: much better than chance
    assert c["deletion_auc"] < c["random_deletion_auc"] - 0.3
    assert c["insertion_auc"] > c["random_insertion_auc"] + 0.3


def test_orders_are_drawn_from_the_seed_and_bounded():
    for m in (6, 7, 24, 25, 300):
        steps = reference_steps(m)
        assert steps[0] == 0 and steps[-1] == m
        np.testing.assert_array_equal(steps, m - steps[::-1])  # symmetric about M/2
        a, b, c = random_orders(m, 3), random_orders(m, 3), random_orders(m, 4)
        assert len(a.orders) == RANDOM_ORDERS and not a.exact
        np.testing.assert_array_equal(a.orders, b.orders)
        assert not np.array_equal(a.orders, c.orders)
        assert all(sorted(o) == list(range(m)) for o in a.orders)
        # new images beyond the whole and the empty one: at most 8 orders × 6 inner points
        assert len(np.unique(a.masks, axis=0)) - 2 <= 48
    assert random_orders(5, 0).exact and len(random_orders(5, 0).orders) == 120


def test_reference_is_the_mean_auc_of_the_orders():
    """For an additive score, each order's deletion curve has a known area; the reference is
    their mean."""
    m, w = 9, np.arange(1.0, 10.0) / 45.0  # weights add up to 1
    ref = random_orders(m, 0)
    shown = ref.masks
    answers = np.stack([1.0 - shown @ w, shown @ w], axis=1)
    area, area_ins = random_reference(ref, answers, 1)
    ks = ref.steps / m
    by_order = []
    for o in ref.orders:
        curve = np.array([w[o[k:]].sum() for k in ref.steps])
        by_order.append(float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(ks))))
    assert area == pytest.approx(np.mean(by_order)) and area_ins == area
    assert random_reference(ref, answers, 0)[0] == pytest.approx(1.0 - area)


def test_built_in_model_ranks_better_than_chance(lite0):
    exp = limner.explain(sample_photo("chelsea"), lite0, seed=0)
    c = exp.to_dict()["explanations"][0]
    for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"):
        assert 0.0 <= c[key] <= 1.0
    assert c["random_deletion_auc"] == c["random_insertion_auc"]
    assert c["deletion_auc"] < c["random_deletion_auc"] - 0.1
    assert c["insertion_auc"] > c["random_insertion_auc"] + 0.1


def test_reference_is_reproducible_for_a_seed(lite0):
    """Occlusion's weights do not depend on the seed; the random orders do."""
    photo = sample_photo("coffee")

    def run(seed: int) -> dict:
        return limner.explain(photo, lite0, method="occlusion", seed=seed).to_dict()

    a, b, c = run(5), run(5), run(6)
    ea, eb, ec = (r["explanations"][0] for r in (a, b, c))
    assert ea["random_deletion_auc"] == eb["random_deletion_auc"]
    assert ea["random_insertion_auc"] == eb["random_insertion_auc"]
    assert ea["deletion_auc"] == ec["deletion_auc"]
    assert ea["random_deletion_auc"] != ec["random_deletion_auc"]


class _TinyCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.mark.parametrize("method", ["integrated-gradients", "gradcam", "lime", "rise"])
def test_every_curve_method_reports_the_reference(method):
    meta = ModelMetadata(
        labels=["a", "b", "c"],
        input=InputSpec(width=32, height=32, layout="NCHW"),
        output="logits",
        name="tiny",
    )
    model = TorchModel(_TinyCnn(), meta)
    image = np.random.default_rng(2).integers(0, 255, size=(48, 48, 3)).astype(np.uint8)
    kwargs = {} if method in ("integrated-gradients", "gradcam") else {"samples": 40}
    result = limner.explain(
        image, model, method=method, segmentation="grid", segments=16, top_k=2, **kwargs
    )
    for c in result.to_dict()["explanations"]:
        assert 0.0 <= c["random_deletion_auc"] == c["random_insertion_auc"] <= 1.0
