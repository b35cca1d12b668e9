"""KernelSHAP over image regions: Shapley kernel weights, paired sampling, and the efficiency
constraint (weights + intercept = the model's probability on the whole image).

When the budget covers every coalition (2^M ≤ samples) the Shapley values are computed exactly.
Otherwise coalition sizes are enumerated from the outside in while the budget allows (sizes 1 and
M-1 first, where the kernel puts most of its mass), and the rest is sampled in complementary
pairs; this is what makes a few hundred evaluations enough for a few dozen regions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from limner.explain.methods.base import Design, Estimate, Explainer, weighted_r2
from limner.explain.perturb import Perturber

#: Largest region count for which exact enumeration is considered.
MAX_EXACT_REGIONS = 14


class KernelShapExplainer(Explainer):
    """KernelSHAP with ``samples`` model evaluations (the empty and whole image included)."""

    name = "kernelshap"
    default_samples = 256

    def design(self, perturber: Perturber, rng: np.random.Generator) -> Design:
        """Exact enumeration when affordable, else enumerated sizes plus paired samples."""
        m = perturber.count
        if m <= MAX_EXACT_REGIONS and 2**m <= self.samples:
            bits = np.arange(2**m)[:, None] >> np.arange(m)[None, :] & 1
            return _ShapDesign(z=bits.astype(np.float32), weights=None, exact=True)
        z, w = _sample_coalitions(m, max(self.samples - 2, 2 * m), rng)
        ends = np.stack([np.zeros(m, np.float32), np.ones(m, np.float32)])
        return _ShapDesign(z=np.vstack([ends, z]), weights=w, exact=False)

    def estimate(self, design: Design, y: np.ndarray) -> Estimate:
        """Exact Shapley values, or the constrained weighted least-squares solution."""
        if not isinstance(design, _ShapDesign):
            raise TypeError("KernelShapExplainer.estimate takes the design it made")
        y = y.astype(np.float64)
        if design.exact:
            return _exact_shapley(design.z, y)
        f0, f1 = float(y[0]), float(y[1])
        z = design.z[2:].astype(np.float64)
        yy = y[2:] - f0
        w = design.weights if design.weights is not None else np.ones(len(yy))
        total = f1 - f0
        # eliminate the last weight with the efficiency constraint sum(phi) = f1 - f0
        x = z[:, :-1] - z[:, -1:]
        t = yy - z[:, -1] * total
        sw = np.sqrt(w)
        phi_head, *_ = np.linalg.lstsq(x * sw[:, None], t * sw, rcond=None)
        phi = np.append(phi_head, total - phi_head.sum())
        r2 = weighted_r2(yy, z @ phi, w)
        return Estimate(weights=phi, intercept=f0, fit_r2=r2, used_features=len(phi))


@dataclass
class _ShapDesign(Design):
    """Coalitions with their Shapley-kernel weights (``exact``: every coalition, in bit order)."""

    weights: np.ndarray | None = None
    exact: bool = False


def _exact_shapley(z: np.ndarray, y: np.ndarray) -> Estimate:
    n, m = z.shape
    idx = np.arange(n)
    size = z.sum(axis=1).astype(int)
    fact = [math.factorial(k) for k in range(m + 1)]
    kernel = np.array([fact[s] * fact[m - s - 1] / fact[m] if s < m else 0.0 for s in range(m + 1)])
    phi = np.zeros(m)
    for i in range(m):
        without = idx[(idx >> i & 1) == 0]
        phi[i] = float(np.sum(kernel[size[without]] * (y[without | (1 << i)] - y[without])))
    return Estimate(
        weights=phi, intercept=float(y[0]), fit_r2=weighted_r2(y, y[0] + z @ phi), used_features=m
    )


def _sample_coalitions(
    m: int, budget: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions (rows of 0/1) and their kernel weights, enumerated then paired-sampled."""
    n_sizes = math.ceil((m - 1) / 2)
    n_paired = (m - 1) // 2
    size_w = np.array([(m - 1) / (s * (m - s)) for s in range(1, n_sizes + 1)])
    size_w[:n_paired] *= 2
    size_w /= size_w.sum()
    rows: list[np.ndarray] = []
    weights: list[float] = []
    left = budget
    remaining = size_w.copy()
    n_full = 0
    for s in range(1, n_sizes + 1):
        paired = s <= n_paired
        count = math.comb(m, s) * (2 if paired else 1)
        if left * remaining[s - 1] / count < 1.0 - 1e-8:
            break
        n_full += 1
        left -= count
        if remaining[s - 1] < 1.0:
            remaining /= 1.0 - remaining[s - 1]
        w = size_w[s - 1] / math.comb(m, s) / (2.0 if paired else 1.0)
        for inds in itertools.combinations(range(m), s):
            row = np.zeros(m, np.float32)
            row[list(inds)] = 1.0
            rows.append(row)
            weights.append(w)
            if paired:
                rows.append(1.0 - row)
                weights.append(w)
    if n_full < n_sizes and left >= 2:
        sizes = np.arange(n_full + 1, n_sizes + 1)
        kernel_mass = size_w[n_full:]  # mass of each remaining size (pair)
        rows_per_draw = np.where(sizes <= n_paired, 2.0, 1.0)
        # proportional to the kernel, so that every drawn row carries the same weight
        p_draw = kernel_mass / rows_per_draw
        p_draw = p_draw / p_draw.sum()
        counts: dict[bytes, list] = {}
        draws = 0
        # draw until the budget holds that many distinct coalitions (repeats add weight)
        while len(counts) < left - 1 and draws < 20 * left:
            k = int(rng.choice(len(sizes), p=p_draw))
            size = int(sizes[k])
            row = np.zeros(m, np.float32)
            row[rng.permutation(m)[:size]] = 1.0
            for r in (row, 1.0 - row) if size <= n_paired else (row,):
                key = r.tobytes()
                if key in counts:
                    counts[key][1] += 1.0
                else:
                    counts[key] = [r, 1.0, k]
            draws += 1
        # importance weights: kernel mass over the chance of drawing the row
        for r, c, k in counts.values():
            rows.append(r)
            weights.append(c * kernel_mass[k] / (p_draw[k] * rows_per_draw[k] * draws))
    return np.asarray(rows, np.float32).reshape(-1, m), np.asarray(weights, np.float64)
