"""Region maps: an image cut into M regions, as an integer label image with ids 0..M-1.

Segmentation runs once per image at a bounded working resolution, so its cost does not grow with
the original image size; the map is then sampled (nearest neighbour) to the model's input size and,
strip by strip, to the original size for panes; boxes and areas come from the index mapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from limner.errors import InvalidInputError
from limner.imaging.transform import fit_within, resize, resize_labels

SEGMENTATIONS = ("slic", "quickshift", "felzenszwalb", "grid")
#: Default number of regions for each algorithm (a target; graph-based ones only approximate it).
DEFAULT_SEGMENTS = 24
#: Longest side of the working resolution at which images are segmented.
WORKING_MAX_SIDE = 320


def grid_shape(n: int) -> tuple[int, int]:
    """Rows × cols = n with rows ≤ cols and the two as close as possible (8 → 2×4, 12 → 3×4)."""
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
    return rows, n // rows


def grid_labels(height: int, width: int, n: int) -> np.ndarray:
    """An even grid of n cells numbered row by row from the top left."""
    rows, cols = grid_shape(n)
    r = (np.arange(height) * rows // height).astype(np.int32)
    c = (np.arange(width) * cols // width).astype(np.int32)
    return r[:, None] * cols + c[None, :]


#: How far from the requested count a segmentation may land (a fraction of it).
COUNT_TOLERANCE = 0.2
#: Longest side at which quickshift runs (its cost grows with pixels × kernel area).
QUICKSHIFT_MAX_SIDE = 128
#: Width of the Gaussian that smooths an image before SLIC, as a share of its longer side; 0
#: (none) by default: 1/75 (3 px at 224) keeps the regions under pixel noise, but took only
#: 15% off MaxSensitivity and both AUCs leaned worse (docs/benchmarks.md, "Regions under
#: noise").
SLIC_SMOOTHING = 0.0
#: Most segmentations tried while searching an algorithm's scale parameter.
MAX_TRIES = 8
#: Tries after which a count within :data:`COUNT_TOLERANCE` ends the search: a region count is
#: a staircase in the scale (SLIC's seeds are a grid), and a target between two steps is not
#: reached by trying more (docs/benchmarks.md, "Segmentation's search").
SETTLE_TRIES = 3


def segment(
    image: np.ndarray, algorithm: str = "slic", segments: int = DEFAULT_SEGMENTS
) -> np.ndarray:
    """Label map of ``image`` (at the size given) with consecutive ids 0..M-1.

    For ``slic``, ``quickshift`` and ``felzenszwalb`` the algorithm's scale parameter is
    searched (secant steps on its logarithm inside a shrinking bracket, at most 8 runs) until
    the count is within 10% of ``segments``, or within 20% after 3 runs, keeping the closest
    result; ``grid`` is exact.
    Quickshift runs at most 128 pixels wide (its cost grows with pixels × kernel area).
    """
    h, w = image.shape[:2]
    if algorithm == "grid":
        return grid_labels(h, w, segments)
    if algorithm not in SEGMENTATIONS:  # pragma: no cover - validated by the caller
        raise InvalidInputError(f"unknown segmentation {algorithm!r}")
    if algorithm == "quickshift":
        qw, qh = fit_within(w, h, QUICKSHIFT_MAX_SIDE)
        small = resize(image, qw, qh) if (qw, qh) != (w, h) else image
        labels = _search(lambda t: _run(small, algorithm, segments, t), segments)
        labels = resize_labels(labels, w, h) if (qw, qh) != (w, h) else labels
    else:
        labels = _search(lambda t: _run(image, algorithm, segments, t), segments)
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(h, w).astype(np.int32)


def _run(image: np.ndarray, algorithm: str, segments: int, t: float) -> np.ndarray:
    """One segmentation at scale factor ``t`` (larger t: more regions)."""
    from skimage import segmentation as sk

    h, w = image.shape[:2]
    if algorithm == "slic":
        n = max(2, round(segments * t))
        sigma = SLIC_SMOOTHING * max(h, w)  # skimage: 0 smooths nothing
        labels = sk.slic(
            image,
            n_segments=n,
            compactness=10.0,
            sigma=sigma,
            start_label=0,
            enforce_connectivity=True,
        )
        if labels.max() + 1 < max(2, segments // 4):
            # fine, noisy textures can collapse SLIC into a few regions: let SLIC-zero adapt
            # the compactness per region instead
            labels = sk.slic(image, n_segments=n, slic_zero=True, sigma=sigma, start_label=0)
        return np.asarray(labels)
    if algorithm == "quickshift":
        # LIME's settings, with the kernel scaled to reach the requested count
        kernel = max(1.0, math.sqrt(h * w / max(segments, 1)) / 6.0 / t)
        return np.asarray(sk.quickshift(image, kernel_size=kernel, max_dist=kernel * 50, ratio=0.2))
    area = float(h * w) / segments / t
    return np.asarray(
        sk.felzenszwalb(image, scale=area / 4.0, sigma=0.8, min_size=max(4, int(area / 3)))
    )


def _search(run: Callable[[float], np.ndarray], target: int) -> np.ndarray:
    """Search the log of the scale factor until the count is within 10% of ``target``, or
    within 20% after :data:`SETTLE_TRIES` runs (at most :data:`MAX_TRIES`)."""
    lo, hi = math.log(1 / 16), math.log(16)
    t = 0.0
    best: tuple[float, np.ndarray] | None = None
    last: tuple[float, float] | None = None
    for tries in range(1, MAX_TRIES + 1):
        labels = run(math.exp(t))
        count = len(np.unique(labels))
        miss = abs(count - target) / target
        if best is None or miss < best[0]:
            best = (miss, labels)
        if miss <= COUNT_TOLERANCE / 2 or (tries >= SETTLE_TRIES and best[0] <= COUNT_TOLERANCE):
            break
        if count < target:
            lo = t
        else:
            hi = t
        if hi - lo < 0.02:
            break
        # secant steps on (log factor, log count), bisection when they leave the bracket
        slope = 1.0
        if last is not None and last[0] != t and last[1] != count:
            slope = max((math.log(count) - math.log(last[1])) / (t - last[0]), 0.25)
        last = (t, float(count))
        step = t + math.log(target / max(count, 1)) / slope
        t = step if lo < step < hi else (lo + hi) / 2
    assert best is not None
    return best[1]


def count_note(algorithm: str, requested: int, got: int) -> str | None:
    """A warning when a segmentation missed the requested count by more than 20%."""
    if algorithm == "grid" or abs(got - requested) <= COUNT_TOLERANCE * requested:
        return None
    return (
        f"asked for {requested} regions, {algorithm} found {got}: the image has too few "
        "distinct areas at any scale for that many"
        if got < requested
        else f"asked for {requested} regions, {algorithm} found {got}: no scale gave fewer"
    )


@dataclass(frozen=True)
class RegionMap:
    """A segmentation at the working resolution and its mapping to the original size."""

    labels: np.ndarray  # (h, w) int32 at the working resolution
    original_size: tuple[int, int]  # (width, height)
    algorithm: str

    @property
    def count(self) -> int:
        """Number of regions M."""
        return int(self.labels.max()) + 1

    def _index(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.labels.shape
        rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.intp)
        cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.intp)
        return rows, cols

    def at_size(self, width: int, height: int) -> np.ndarray:
        """The label map sampled to ``width``×``height`` (nearest neighbour)."""
        if (width, height) == (self.labels.shape[1], self.labels.shape[0]):
            return self.labels
        rows, cols = self._index(width, height)
        # two 1-D gathers: much faster than one 2-D fancy index on a 12-megapixel map
        return np.take(np.take(self.labels, rows, axis=0), cols, axis=1)

    @cached_property
    def _ids(self) -> np.ndarray:
        """The working map in the narrowest dtype its ids fit (uint8 up to 256 regions): the
        full-size rows sampled from it are then one byte a pixel, and panes are drawn from them
        by 8-bit lookups."""
        return self.labels.astype(np.uint8) if self.count <= 256 else self.labels

    @cached_property
    def _original_index(self) -> tuple[np.ndarray, np.ndarray]:
        return self._index(*self.original_size)

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """Region ids of the original image's rows ``top`` to ``bottom`` (exclusive), at the
        original width (uint8 when there are at most 256 regions)."""
        rows, cols = self._original_index
        # two 1-D gathers: much faster than one 2-D fancy index
        return np.take(np.take(self._ids, rows[top:bottom], axis=0), cols, axis=1)

    @property
    def original(self) -> np.ndarray:
        """The label map at the original image size (uint8 when there are at most 256 regions).

        Built on each call and not kept: a 40-megapixel map is 40 MB. Panes never need it
        whole; they take :meth:`rows` strip by strip."""
        return self.rows(0, self.original_size[1])

    @cached_property
    def boxes_and_areas(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-region ``[x0, y0, x1, y1]`` (exclusive ends) and pixel areas at the original size.

        Computed from the working map and the index mapping, without touching every original pixel.
        """
        width, height = self.original_size
        rows, cols = self._index(width, height)
        h, w = self.labels.shape
        row_count = np.bincount(rows, minlength=h)  # original rows per working row
        col_count = np.bincount(cols, minlength=w)
        m = self.count
        weight = row_count[:, None] * col_count[None, :]
        areas = np.bincount(self.labels.ravel(), weights=weight.ravel(), minlength=m).astype(
            np.int64
        )
        # first/last original row and col that map to each working row/col
        row_first = np.searchsorted(rows, np.arange(h), side="left")
        row_last = np.searchsorted(rows, np.arange(h), side="right")
        col_first = np.searchsorted(cols, np.arange(w), side="left")
        col_last = np.searchsorted(cols, np.arange(w), side="right")
        boxes = np.zeros((m, 4), dtype=np.int64)
        ys, xs = np.nonzero(weight > 0)
        lab = self.labels[ys, xs]
        x0 = np.full(m, width, np.int64)
        y0 = np.full(m, height, np.int64)
        x1 = np.zeros(m, np.int64)
        y1 = np.zeros(m, np.int64)
        np.minimum.at(x0, lab, col_first[xs])
        np.minimum.at(y0, lab, row_first[ys])
        np.maximum.at(x1, lab, col_last[xs])
        np.maximum.at(y1, lab, row_last[ys])
        boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3] = x0, y0, x1, y1
        boxes[areas == 0] = 0
        return boxes, areas


def region_map(image: np.ndarray, algorithm: str, segments: int) -> RegionMap:
    """Segment ``image`` once at the working resolution."""
    h, w = image.shape[:2]
    ww, wh = fit_within(w, h, WORKING_MAX_SIDE)
    small = resize(image, ww, wh)
    # intp ids: the maps index lookup tables (np.take), which would convert narrower ints first
    labels = segment(small, algorithm, segments).astype(np.intp)
    return RegionMap(labels=labels, original_size=(w, h), algorithm=algorithm)
