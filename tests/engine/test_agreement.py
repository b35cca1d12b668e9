"""The agreement of explanations on the same regions, and explaining on a given region map.

Spearman is checked against scipy and against the textbook formula on weights without ties;
the top-3 overlap and the disagreements on small hand-made columns whose answers are known.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from limner.errors import InvalidInputError
from limner.explain import explain
from limner.explain.agreement import (
    NEUTRAL_FRACTION,
    agreement,
    disagreements,
    pair_agreement,
    signs,
    spearman,
    top_regions,
)
from limner.explain.segmentation import RegionMap, grid_labels, region_map
from limner.explain.shared_regions import dump_regions, load_regions
from patch_models import brightness_model, patch_image


def test_spearman_is_scipys_and_the_textbook_formula() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = rng.normal(size=(2, 24))
        rho = spearman(a, b)
        assert rho == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
        d = np.argsort(np.argsort(a)) - np.argsort(np.argsort(b))
        n = len(a)
        assert rho == pytest.approx(1 - 6 * float((d**2).sum()) / (n * (n * n - 1)), abs=1e-12)


def test_spearman_of_one_order_reversed_and_undefined() -> None:
    a = np.array([0.3, -0.1, 0.5, 0.0, 0.2])
    assert spearman(a, 2 * a + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros(5)) is None  # a constant column has no ranks
    assert spearman([1.0], [2.0]) is None
    with pytest.raises(ValueError, match="same regions"):
        spearman(a, a[:4])


def test_top_regions_by_weight_ties_by_id() -> None:
    w = np.array([0.1, 0.5, -0.9, 0.5, 0.2])
    assert top_regions(w) == [1, 3, 4]  # by weight, not by |weight|; 1 before 3 on the tie
    assert top_regions(w, k=1) == [1]
    assert top_regions(w[:2], k=3) == [1, 0]


def test_pair_agreement_counts_the_shared_top_regions() -> None:
    a = np.array([0.9, 0.8, 0.7, 0.0, -0.1, -0.2])
    b = np.array([0.9, 0.0, 0.7, 0.8, -0.1, -0.2])
    pair = pair_agreement(a, b)
    assert pair.shared_top == [0, 2] and pair.top_overlap == 2 and pair.top_k == 3
    assert pair.spearman == pytest.approx(stats.spearmanr(a, b).statistic)
    assert pair_agreement(a, a).top_overlap == 3


def test_agreement_lists_every_pair_in_order() -> None:
    cols = np.random.default_rng(1).normal(size=(4, 10))
    pairs = agreement(list(cols))
    assert [(p.a, p.b) for p in pairs] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    for p in pairs:
        assert p.spearman == pytest.approx(stats.spearmanr(cols[p.a], cols[p.b]).statistic)
        assert set(p.shared_top) == set(top_regions(cols[p.a])) & set(top_regions(cols[p.b]))
    assert agreement([cols[0]]) == []


def test_signs_leave_noise_around_zero_neutral() -> None:
    w = np.array([1.0, -0.5, NEUTRAL_FRACTION / 2, -NEUTRAL_FRACTION / 2, 0.0])
    assert signs(w).tolist() == [1, -1, 0, 0, 0]


def test_disagreements_on_the_top_and_on_signs() -> None:
    a = np.array([0.9, 0.8, 0.7, 0.1, -0.3, 0.001])
    b = np.array([0.9, 0.8, 0.1, 0.7, 0.3, -0.001])
    found = {(d.region, d.kind): (d.inside, d.outside) for d in disagreements([a, b])}
    assert found == {
        (2, "top"): ([0], [1]),  # in a's top 3 only
        (3, "top"): ([1], [0]),  # in b's top 3 only
        (4, "sign"): ([1], [0]),  # raises the class in b, lowers it in a
        # region 5 flips sign too, but within the neutral band of both: no disagreement
    }
    assert disagreements([a, a]) == [] and disagreements([a]) == []


def test_a_region_map_survives_its_bytes() -> None:
    image = patch_image()
    regions = region_map(image, "slic", 12)
    back = load_regions(dump_regions(regions))
    assert np.array_equal(back.labels, regions.labels)
    assert back.original_size == regions.original_size and back.algorithm == "slic"
    for part in (0, 1):
        assert np.array_equal(back.boxes_and_areas[part], regions.boxes_and_areas[part])
    with pytest.raises(InvalidInputError):
        load_regions(b"not a region map")
    holes = RegionMap(labels=np.array([[0, 2], [2, 0]]), original_size=(2, 2), algorithm="x")
    with pytest.raises(InvalidInputError, match=r"0\.\.M-1"):
        load_regions(dump_regions(holes))


def test_explain_on_a_given_region_map_uses_it() -> None:
    """A map given to the engine replaces its own segmentation: a 2×2 grid on a slic setting
    gives the grid's four regions, and the one covering the bright patch weighs most."""
    image = patch_image()
    grid = RegionMap(
        labels=grid_labels(128, 128, 4).astype(np.intp), original_size=(128, 128), algorithm="grid"
    )
    model = brightness_model()
    exp = explain(image, model, segmentation="slic", segments=24, regions=grid, classes=["bright"])
    result = exp.to_dict()
    assert result["segmentation"]["count"] == 4
    (item,) = result["explanations"]
    assert {r["id"]: r["bbox"] for r in item["regions"]}[0] == [0, 0, 64, 64]
    assert item["regions"][0]["id"] == 0  # the top-left cell, where the patch is
    # a map of another image's size is refused, not silently stretched
    small = RegionMap(labels=grid.labels, original_size=(64, 64), algorithm="grid")
    with pytest.raises(InvalidInputError, match="size"):
        explain(image, model, regions=small)
