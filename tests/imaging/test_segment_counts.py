"""Every segmentation lands within ±20% of the requested region count on the bundled photos."""

from __future__ import annotations

import pytest

from limner.explain.segmentation import region_map
from limner.samples import SAMPLE_PHOTOS, sample_photo


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["slic", "quickshift", "felzenszwalb"])
@pytest.mark.parametrize("requested", [12, 24, 40])
def test_requested_count_is_honoured(algorithm, requested):
    counts = {
        name: region_map(sample_photo(name), algorithm, requested).count for name in SAMPLE_PHOTOS
    }
    assert all(abs(c - requested) <= 0.2 * requested for c in counts.values()), counts


def test_a_count_between_two_steps_ends_the_search_after_three_tries():
    """Region counts are a staircase in the scale: where the target lies between two steps
    (here 20 below 1.3, 30 above), trying more cannot reach it, and the closest count within
    ±20% found in three tries is kept."""
    import numpy as np

    from limner.explain.segmentation import _search

    scales: list[float] = []

    def staircase(t: float) -> np.ndarray:
        scales.append(t)
        return np.arange(20 if t < 1.3 else 30)

    labels = _search(staircase, 24)
    assert len(scales) == 3 and len(np.unique(labels)) == 20
    # a count within ±10% still ends the search at once
    scales.clear()
    assert len(np.unique(_search(lambda t: scales.append(t) or np.arange(23), 24))) == 23
    assert len(scales) == 1
