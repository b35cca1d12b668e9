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
