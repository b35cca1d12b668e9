"""XRAI (Kapishnikov et al., ICCV 2019): regions grown from a pixel attribution.

XRAI turns a pixel attribution (Integrated Gradients from a black and a white baseline,
averaged: see :mod:`limner.explain.methods.gradients`) into a ranking of image regions:

1. **Candidates.** The image, at the model's input size with its values stretched to −1..1,
   is over-segmented by Felzenszwalb's graph-based algorithm at several scales (50 to 1000);
   every segment of every scale, dilated by a few pixels so that it takes in the edge it lies
   on, is a candidate region. Candidates overlap, within a scale (the dilation) and across scales.
2. **Greedy growth by gain density.** Starting from an empty selection, repeatedly take the
   candidate whose *new* pixels (those not yet selected) have the highest mean attribution, and
   add those new pixels as one region. A candidate that would add fewer than a handful of new
   pixels is dropped. Growth ends when the image is covered or no candidate is left; pixels no
   candidate covered form one last region.
3. **Ranking.** Regions are ranked by their gain density (highest first), the uncovered rest
   last; each pixel's XRAI value is the gain density of its region.

Everything here is numpy and scikit-image; the growth is incremental (each candidate's sum and
count of uncovered pixels are updated as pixels get covered), so it costs about one pass over
the candidates' pixels per added region rather than one per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Felzenszwalb scale values of the candidate segmentations (the paper's range, 50..1000).
SCALES = (50, 100, 150, 250, 500, 1000)
#: Felzenszwalb's Gaussian pre-smoothing.
SIGMA = 0.8
#: The size the sizes below are given for (they scale with the model's input area or side).
REFERENCE_SIDE = 224
#: Smallest Felzenszwalb segment, in pixels at 224×224.
MIN_SEGMENT = 150
#: Radius by which every candidate is dilated, in pixels at 224×224.
DILATION = 5
#: A candidate adding fewer new pixels than this (at 224×224) is dropped.
MIN_NEW_PIXELS = 50


@dataclass(frozen=True)
class XraiRegions:
    """XRAI's regions of one image at the model's input size.

    ``labels`` (h, w) holds ids 0..M-1 in XRAI's order (0: the highest gain density);
    ``remainder`` is the id of the region that holds what the ranking does not separate (the
    pixels no candidate covered and the regions beyond a cap), or None when there is none;
    ``grown`` counts the regions the greedy growth added before any cap.
    """

    labels: np.ndarray
    remainder: int | None
    grown: int

    @property
    def count(self) -> int:
        """Number of regions M."""
        return int(self.labels.max()) + 1


def candidates(image: np.ndarray) -> list[np.ndarray]:
    """XRAI's candidate regions of an RGB image (h, w, 3): flat pixel indices of each dilated
    Felzenszwalb segment, over every scale in :data:`SCALES`."""
    from skimage.morphology import dilation, disk
    from skimage.segmentation import felzenszwalb

    h, w = image.shape[:2]
    area = h * w / REFERENCE_SIDE**2
    radius = max(1, round(DILATION * min(h, w) / REFERENCE_SIDE))
    footprint = disk(radius)
    x = np.asarray(image, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.zeros_like(x)
    out: list[np.ndarray] = []
    for scale in SCALES:
        seg = felzenszwalb(x, scale=scale, sigma=SIGMA, min_size=max(1, round(MIN_SEGMENT * area)))
        for box, mask in _segments(seg, radius):
            grown = dilation(mask, footprint)
            ys, xs = np.nonzero(grown)
            out.append((ys + box[0]) * w + (xs + box[1]))
    return out


def _segments(seg: np.ndarray, pad: int) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Each segment of a label map as (top-left corner, mask cropped to its box + ``pad``)."""
    h, w = seg.shape
    ids = np.unique(seg, return_inverse=True)[1].reshape(h, w)
    n = int(ids.max()) + 1
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w)).ravel()
    cols = np.broadcast_to(np.arange(w)[None, :], (h, w)).ravel()
    flat = ids.ravel()
    y0 = np.full(n, h)
    x0 = np.full(n, w)
    y1 = np.zeros(n, np.int64)
    x1 = np.zeros(n, np.int64)
    np.minimum.at(y0, flat, rows)
    np.minimum.at(x0, flat, cols)
    np.maximum.at(y1, flat, rows + 1)
    np.maximum.at(x1, flat, cols + 1)
    out = []
    for i in range(n):
        top, left = max(0, int(y0[i]) - pad), max(0, int(x0[i]) - pad)
        bottom, right = min(h, int(y1[i]) + pad), min(w, int(x1[i]) + pad)
        out.append(((top, left), ids[top:bottom, left:right] == i))
    return out


def grow(
    attribution: np.ndarray, pool: list[np.ndarray], min_new: int
) -> tuple[list[np.ndarray], list[float], np.ndarray]:
    """XRAI's greedy growth over a pool of candidates (flat pixel indices).

    Returns the regions in the order they were added (flat indices of the pixels each one
    added), their gain densities (mean attribution over those pixels), and the flat indices
    no region covered.
    """
    a = np.asarray(attribution, dtype=np.float64).ravel()
    n = len(pool)
    if n == 0:
        return [], [], np.arange(a.size)
    pix = np.concatenate(pool)
    cand = np.repeat(np.arange(n), [len(p) for p in pool])
    sums = np.bincount(cand, weights=a[pix], minlength=n)
    counts = np.bincount(cand, minlength=n).astype(np.int64)
    alive = counts >= min_new
    covered = np.zeros(a.size, dtype=bool)
    regions: list[np.ndarray] = []
    gains: list[float] = []
    while alive.any():
        density = np.full(n, -np.inf)
        density[alive] = sums[alive] / counts[alive]
        best = int(np.argmax(density))
        new = np.unique(pix[cand == best])  # its entries are exactly its uncovered pixels
        regions.append(new)
        gains.append(float(density[best]))
        covered[new] = True
        alive[best] = False
        gone = covered[pix]
        sums -= np.bincount(cand[gone], weights=a[pix[gone]], minlength=n)
        counts -= np.bincount(cand[gone], minlength=n)
        pix, cand = pix[~gone], cand[~gone]
        alive &= counts >= min_new
    return regions, gains, np.flatnonzero(~covered)


def xrai_regions(image: np.ndarray, attribution: np.ndarray, cap: int | None) -> XraiRegions:
    """XRAI's regions of ``image`` (h, w, 3) for a pixel ``attribution`` (h, w) at the same size.

    Regions are ranked by gain density, the uncovered pixels last; with ``cap``, the regions
    from the cap-th on (and the uncovered pixels) are merged into one last region, so there are
    at most ``cap`` regions.
    """
    h, w = attribution.shape
    if image.shape[:2] != (h, w):
        raise ValueError("the attribution and the image must be of the same size")
    min_new = max(1, round(MIN_NEW_PIXELS * h * w / REFERENCE_SIDE**2))
    added, gains, rest = grow(attribution, candidates(image), min_new)
    order = sorted(range(len(added)), key=lambda i: -gains[i])  # stable: ties keep their turn
    parts = [added[i] for i in order]
    remainder: int | None = None
    if len(rest):
        parts.append(rest)
        remainder = len(parts) - 1
    if cap is not None and len(parts) > cap:
        parts = [*parts[: cap - 1], np.concatenate(parts[cap - 1 :])]
        remainder = cap - 1
    labels = np.zeros(h * w, dtype=np.intp)
    for i, p in enumerate(parts):
        labels[p] = i
    return XraiRegions(labels.reshape(h, w), remainder, len(added))


def density(attribution: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Mean attribution over each region (count,): XRAI's gain density of the region."""
    sums = np.bincount(labels.ravel(), weights=attribution.ravel(), minlength=count)[:count]
    areas = np.bincount(labels.ravel(), minlength=count)[:count]
    return np.asarray(sums / np.maximum(areas, 1), dtype=np.float64)


def xrai_map(attribution: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """XRAI's pixel map (h, w): every pixel gets its region's gain density."""
    return np.take(density(attribution, labels, count), labels)


def xrai_order(
    attribution: np.ndarray, labels: np.ndarray, count: int, remainder: int | None
) -> np.ndarray:
    """Region ids by gain density, highest first, the ``remainder`` region last.

    For the class the regions were grown for this is XRAI's own order (0, 1, …, M−1); for
    another class it is XRAI's ranking rule applied to that class's attribution on the same
    regions.
    """
    d = density(attribution, labels, count)
    order = np.lexsort((np.arange(count), -d))
    if remainder is not None:
        order = np.concatenate([order[order != remainder], [remainder]])
    return order
