"""The heatmap's colour legend: labels that never collide, a legend that reads at any size."""

from __future__ import annotations

import numpy as np
import pytest

from limner.imaging.annotate import legend_layout, legend_patch, with_legend


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("size", [(96, 96), (224, 224), (640, 480), (4000, 3000), (3000, 4000)])
@pytest.mark.parametrize("max_abs", [0.278, 0.000123456, 12345.678])
def test_labels_never_collide_and_stay_inside(size, max_abs):
    w, h = size
    layout = legend_layout(w, h, max_abs)
    if layout is None:  # only a tiny pane may go without one, when its labels are long
        assert w < 160 and len(f"{max_abs:.3g}") > 5
        return
    low, zero, high = (layout.labels[k] for k in ("low", "zero", "high"))
    assert not _overlap(low, zero) and not _overlap(zero, high) and not _overlap(low, high)
    for left, top, right, bottom in layout.labels.values():
        assert layout.x0 <= left and right <= w and layout.y0 <= top and bottom <= h


@pytest.mark.parametrize("size", [(640, 480), (4000, 3000)])
def test_the_legend_is_a_fixed_share_of_the_pane(size):
    """Shown at screen width, the legend of a 4000×3000 photo reads as large as a small one's."""
    w, h = size
    layout = legend_layout(w, h, 0.278)
    assert layout is not None
    assert (h - layout.y0) / h >= 0.05 and layout.font_size / max(w, h) >= 1 / 40


def test_the_patch_is_the_legend_drawn_on_the_pane():
    pane = np.full((300, 400, 3), 50, np.uint8)
    drawn = with_legend(pane, 0.5)
    x0, y0, patch = legend_patch(400, 300, 0.5)
    assert np.array_equal(drawn[y0:, x0:], patch)
    assert patch.max(axis=2).min() < 100  # dark label text was drawn on the white box
