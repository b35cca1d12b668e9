"""RISE: random low-resolution masks, smoothly upsampled with random shifts.

Each mask blends the image with the baseline; a region's feature is the mask's mean over the
region, and a ridge regression of the model's answers on those features gives additive region
weights (so RISE results read like the other methods').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from limner.explain.methods.base import Design, Estimate, Explainer, ridge_estimate
from limner.explain.perturb import Perturber


@dataclass
class _RiseDesign(Design):
    grids: np.ndarray | None = None  # (n, s+1, s+1) 0/1 cells
    shifts: np.ndarray | None = None  # (n, 2) pixel offsets (dy, dx)
    cell: tuple[int, int] = (1, 1)
    binary: bool = False

    def images(self, perturber: Perturber, start: int, stop: int) -> np.ndarray:
        """Image/baseline blends under the soft masks of rows ``[start, stop)``."""
        h, w = perturber.labels.shape
        return perturber.soft(masks(self, start, stop, h, w))


class RiseExplainer(Explainer):
    """RISE with ``samples`` masks of ``cells``×``cells`` cells, each kept with probability 0.5."""

    name = "rise"
    default_samples = 1000

    cells = 7
    keep_probability = 0.5
    alpha = 1e-3

    def design(self, perturber: Perturber, rng: np.random.Generator) -> Design:
        """Random cell grids and shifts; region features are each mask's mean over the region."""
        h, w = perturber.labels.shape
        n = max(self.samples, 2)
        design = mask_design(rng, n, self.cells, self.keep_probability, h, w)
        design.z = np.zeros((n, perturber.count), np.float32)
        onehot = np.zeros((h * w, perturber.count), np.float32)
        onehot[np.arange(h * w), perturber.labels.ravel()] = 1.0
        onehot /= np.maximum(onehot.sum(axis=0, keepdims=True), 1.0)
        for start in range(0, n, 64):
            batch = masks(design, start, min(n, start + 64), h, w)
            design.z[start : start + len(batch)] = batch.reshape(len(batch), -1) @ onehot
        return design

    def estimate(self, design: Design, y: np.ndarray) -> Estimate:
        """Ridge regression of the answers on the region coverages."""
        z = design.z.astype(np.float64)
        # the ridge fit as a Bayesian linear model, as for LIME
        return ridge_estimate(z, y.astype(np.float64), np.ones(len(y)), self.alpha * len(y))


def mask_design(
    rng: np.random.Generator, n: int, cells: int, keep: float, h: int, w: int
) -> _RiseDesign:
    """RISE's ``n`` random masks of an ``h``×``w`` image: ``cells``×``cells`` grids whose cells
    are kept with probability ``keep``, upsampled bilinearly and shifted by up to a cell (rows
    drawn by :func:`masks`)."""
    grids = (rng.random((n, cells + 1, cells + 1)) < keep).astype(np.float32)
    cell = (int(np.ceil(h / cells)), int(np.ceil(w / cells)))
    shifts = np.stack([rng.integers(0, cell[0], n), rng.integers(0, cell[1], n)], axis=1)
    return _RiseDesign(z=np.zeros((n, 0), np.float32), grids=grids, shifts=shifts, cell=cell)


def _interp(n_out: int, n_in: int, scale: int) -> np.ndarray:
    """Bilinear interpolation matrix from ``n_in`` cell centres to ``n_out`` pixels."""
    pos = (np.arange(n_out) + 0.5) / scale - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    hi = np.clip(lo + 1, 0, n_in - 1)
    frac = np.clip(pos - np.floor(pos), 0, 1)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def masks(design: _RiseDesign, start: int, stop: int, h: int, w: int) -> np.ndarray:
    """The soft masks of rows ``[start, stop)`` of ``design``, (stop - start, h, w) in 0..1."""
    if design.grids is None or design.shifts is None:
        raise TypeError("a RISE design needs its grids and shifts")
    s1 = design.grids.shape[1]
    ch, cw = design.cell
    ry = _interp(s1 * ch, s1, ch)
    rx = _interp(s1 * cw, s1, cw)
    out = np.empty((stop - start, h, w), np.float32)
    for k, i in enumerate(range(start, stop)):
        dy, dx = design.shifts[i]
        out[k] = ry[dy : dy + h] @ design.grids[i] @ rx[dx : dx + w].T
    return out


class DriseExplainer(RiseExplainer):
    """D-RISE (Petsiuk et al., CVPR 2021), the detector method: RISE's random masks of
    16×16 cells, each masked image's answer (for a detector's box: D-RISE's similarity of its
    detections to the box) weighting its mask. The paper's pixel map, averaged over a region,
    less what a mask unrelated to the answers would give, is the covariance of the answers with
    the region's coverage over the keep probability: that is each region's weight here. Its
    interval is the covariance's standard error (the masks are independent draws)."""

    name = "drise"
    cells = 16

    def estimate(self, design: Design, y: np.ndarray) -> Estimate:
        """Each region's D-RISE weight, ``cov(answers, coverage) / keep``, and its error."""
        z = design.z.astype(np.float64)
        y = y.astype(np.float64)
        n = len(y)
        dz = z - z.mean(axis=0)
        dy = y - y.mean()
        products = dz * dy[:, None] / self.keep_probability
        weights = products.mean(axis=0)
        variance = products.var(axis=0, ddof=1) / max(n, 2)
        intercept = float(y.mean() - z.mean(axis=0) @ weights)
        fit = z @ weights + intercept
        total = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float(((y - fit) ** 2).sum()) / total if total > 0 else 0.0
        return Estimate(
            weights=weights,
            intercept=intercept,
            fit_r2=r2,
            used_features=z.shape[1],
            cov=np.diag(variance),
            dof=float(max(n - 1, 1)),
        )
