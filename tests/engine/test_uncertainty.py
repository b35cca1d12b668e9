"""Intervals, settled rankings, adaptive stopping and warnings in the RESULT (real model)."""

from __future__ import annotations

import numpy as np
import pytest

import limner
from limner.explain.metrics import random_orders
from limner.imaging import resize
from limner.samples import sample_photo


@pytest.fixture(scope="module")
def coffee():
    return resize(sample_photo("coffee"), 224, 224)


def _check_regions(cls: dict) -> None:
    for r in cls["regions"]:
        lo, hi = r["interval"]
        assert lo <= r["weight"] <= hi and r["stderr"] >= 0
        assert hi - lo == pytest.approx(2 * (r["weight"] - lo))


def test_adaptive_default_reports_what_it_used_and_why(lite0, coffee):
    d = limner.explain(coffee, lite0, seed=0).to_dict()
    assert d["method"] == "kernelshap" and d["confidence"] == 0.9
    assert d["stop_reason"] in ("settled", "max_samples")
    assert 0 < d["samples"] <= d["max_samples"] == 256
    cls = d["explanations"][0]
    _check_regions(cls)
    assert isinstance(cls["settled"], bool)
    assert cls["settled"] == (d["stop_reason"] == "settled")
    assert any(r["stderr"] > 0 for r in cls["regions"])
    assert cls["images"]["regions"].endswith("-regions.png")


def test_a_small_budget_stops_unsettled_and_says_so(lite0, coffee):
    d = limner.explain(coffee, lite0, max_samples=60, confidence=0.99, settle_top=8).to_dict()
    assert d["stop_reason"] == "max_samples" and d["samples"] <= 60
    cls = d["explanations"][0]
    assert not cls["settled"]
    assert any("not settled" in w for w in cls["warnings"])


def test_fixed_samples_and_other_methods_carry_intervals(lite0, coffee):
    fixed = limner.explain(coffee, lite0, samples=120, segments=12).to_dict()
    assert fixed["stop_reason"] == "budget" and fixed["max_samples"] is None
    _check_regions(fixed["explanations"][0])
    lime = limner.explain(coffee, lite0, method="lime", samples=150, segments=12).to_dict()
    _check_regions(lime["explanations"][0])
    assert all(r["stderr"] > 0 for r in lime["explanations"][0]["regions"])
    occ = limner.explain(coffee, lite0, method="occlusion", segments=8).to_dict()
    # deterministic: no sampling error, so no interval (not a zero-width one) and no verdict
    assert all(r["stderr"] is None for r in occ["explanations"][0]["regions"])
    assert occ["explanations"][0]["settled"] is None
    exact = limner.explain(
        coffee, lite0, samples=64, segmentation="grid", segments=6, baseline="gray"
    ).to_dict()
    assert exact["stop_reason"] == "exact"
    assert all(r["interval"] is None for r in exact["explanations"][0]["regions"])
    assert exact["explanations"][0]["settled"] is None


def test_a_fixed_budget_costs_its_samples_and_no_more(lite0, coffee):
    # 26 regions and 160 samples: the sampled design repeats some coalitions, and each
    # distinct one is scored once (the design with repeats has more rows than the budget)
    scored = []

    def predict(x):
        scored.append(len(x))
        return lite0.predict_tensor(x)

    exp = limner.explain(coffee, lite0, predict=predict, samples=160, segments=26, seed=0)
    assert exp.regions.count > 20
    assert exp.samples <= 160 and sum(scored) == exp.model_evaluations
    curve_points = 2 * (exp.regions.count + 1)  # at most: every step of both curves
    # and the random-order reference: its images beyond the whole and the empty one
    reference = len(np.unique(random_orders(exp.regions.count, 0).masks, axis=0)) - 2
    assert exp.model_evaluations <= 1 + 160 + curve_points + reference


def test_a_16x16_image_gets_a_warning(lite0):
    tiny = np.ascontiguousarray(resize(sample_photo("chelsea"), 16, 16))
    d = limner.explain(tiny, lite0).to_dict()
    assert d["explanations"][0]["warnings"], d["explanations"][0]


def test_regions_pane_and_legend_are_drawn(lite0, coffee):
    exp = limner.explain(coffee, lite0, method="occlusion", segmentation="grid", segments=4)
    c = exp.explained_classes[0]
    regions = exp.pane(c, "regions")
    assert regions.shape == coffee.shape
    # outlines: the yellow boundary between the 2×2 cells
    assert (regions[112, 20] == [255, 255, 0]).all() or (regions[111, 20] == [255, 255, 0]).all()
    heat = exp.pane(c, "heatmap")
    assert (heat[-3, -3] == 255).all()  # the legend's white box in the corner


def test_near_equal_top_regions_are_tied_not_ordered():
    from limner.explain.uncertainty import quantile, ties, unsettled_contrasts

    # coffee's shape: two clear leaders, then three regions equal in absolute weight
    w = np.array([0.195, 0.127, 0.049, 0.045, -0.045, 0.002])
    cov = np.diag(np.full(6, 0.006**2))
    q = quantile(0.9)
    # a strict order cannot be settled: 0.049 vs 0.045 is within the noise
    assert unsettled_contrasts(w, cov, 3, q, tolerance=0.0)
    # within δ = 0.2 × 0.195 = 0.039 they are tied, and the ranking counts as settled
    assert unsettled_contrasts(w, cov, 3, q, tolerance=0.2) == []
    assert ties(w, cov, 3, q, tolerance=0.2) == [(2, 3)]
    # a tie must itself be settled: with wide intervals it is not
    wide = np.diag(np.full(6, 0.03**2))
    assert unsettled_contrasts(w, wide, 3, q, tolerance=0.2)
    assert (2, 3) not in ties(w, wide, 3, q, tolerance=0.2)


def test_the_result_reports_ties_and_tolerance(lite0, coffee):
    d = limner.explain(coffee, lite0, seed=0, tie_tolerance=0.3).to_dict()
    assert d["tie_tolerance"] == 0.3
    cls = d["explanations"][0]
    ids = [r["id"] for r in cls["regions"]]
    top = sorted(ids, key=lambda i: -abs(next(r["weight"] for r in cls["regions"] if r["id"] == i)))
    for a, b in cls["ties"]:
        assert top.index(b) == top.index(a) + 1 <= 3
    from limner.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        limner.explain(coffee, lite0, tie_tolerance=1.5)
