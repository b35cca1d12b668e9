"""Region maps: an image cut into M regions, as an integer label image with ids 0..M-1.

Segmentation runs once per image at a bounded working resolution, so its cost does not grow with
the original image size; the map is then sampled (nearest neighbour) to the model's input size and,
strip by strip, to the original size for panes; boxes and areas come from the index mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from limner.errors import InvalidInputError
from limner.imaging.transform import fit_within, resize

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


def segment(
    image: np.ndarray, algorithm: str = "slic", segments: int = DEFAULT_SEGMENTS
) -> np.ndarray:
    """Label map of ``image`` (at the size given) with consecutive ids 0..M-1."""
    h, w = image.shape[:2]
    if algorithm == "grid":
        return grid_labels(h, w, segments)
    from skimage import segmentation as sk

    if algorithm == "slic":
        labels = sk.slic(
            image, n_segments=segments, compactness=10.0, start_label=0, enforce_connectivity=True
        )
        if labels.max() + 1 < max(2, segments // 4):
            # fine, noisy textures can collapse SLIC into a few regions: let SLIC-zero adapt
            # the compactness per region instead
            labels = sk.slic(image, n_segments=segments, slic_zero=True, start_label=0)
    elif algorithm == "quickshift":
        # LIME's defaults, with the kernel scaled to reach roughly the requested count
        kernel = max(2.0, math.sqrt(h * w / max(segments, 1)) / 6.0)
        labels = sk.quickshift(image, kernel_size=kernel, max_dist=kernel * 50, ratio=0.2)
    elif algorithm == "felzenszwalb":
        labels = sk.felzenszwalb(
            image,
            scale=float(h * w) / segments / 4.0,
            sigma=0.8,
            min_size=max(8, h * w // (segments * 3)),
        )
    else:  # pragma: no cover - validated by the caller
        raise InvalidInputError(f"unknown segmentation {algorithm!r}")
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(h, w).astype(np.int32)


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
