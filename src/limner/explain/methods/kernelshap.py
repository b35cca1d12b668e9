"""KernelSHAP over image regions: Shapley kernel weights, paired sampling, and the efficiency
constraint (weights + intercept = the model's probability on the whole image).

When the budget covers every coalition (2^M ≤ samples) the Shapley values are computed exactly.
Otherwise coalitions are grouped by size into strata (size s together with its complement size
M − s). Strata are enumerated from the outside in while the budget allows (sizes 1 and M − 1
first, where the kernel puts most of its mass); the rest is importance-sampled in complementary
pairs: a stratum with probability q(k), then a coalition of that size uniformly, the pair
weighted by the stratum's kernel mass over q(k).

The weights' covariance is the weighted regression's sandwich over the sampled pairs: each pair
is one independent draw, its influence on the solution is A⁻¹ xᵢeᵢ summed over its two rows, and
the spread of those influences within each round gives the variance; enumerated coalitions add
none. Without ``samples`` the explainer is adaptive: the engine asks for rounds (``extend``)
until the top regions are settled, and each round shifts q(k) towards the strata whose pairs
move the unsettled comparisons most (half of q stays proportional to the kernel, so every
stratum keeps being sampled and the importance weights stay bounded).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from limner.explain.methods.base import Design, Estimate, Explainer, Focus, weighted_r2
from limner.explain.perturb import Perturber

#: Largest region count for which exact enumeration is considered.
MAX_EXACT_REGIONS = 14
#: Budget of the adaptive default when the user names none (``max_samples``).
DEFAULT_MAX_SAMPLES = 256


@dataclass
class _ShapDesign(Design):
    """Ends, enumerated coalitions, then sampled pairs (rows ``S``, ``M∖S`` of each draw)."""

    enum_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: sampled strata: k (size of the smaller side), units N_k and kernel mass per unit row
    strata: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    draw_stratum: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    draw_q: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seen: set[bytes] = field(default_factory=set)

    @property
    def n_enum(self) -> int:
        """Enumerated rows (after the two ends)."""
        return len(self.enum_weights)

    def row_weights(self) -> np.ndarray:
        """Kernel weights of rows 2.. (enumerated ones fixed, sampled ones importance-weighted)."""
        d = len(self.draw_stratum)
        if d == 0:
            return self.enum_weights.copy()
        per_draw = self.mass[self.draw_stratum] / (self.draw_q * d)
        return np.concatenate([self.enum_weights, np.repeat(per_draw, 2)])


class KernelShapExplainer(Explainer):
    """KernelSHAP: ``samples`` evaluations (ends included), or adaptive up to ``max_samples``."""

    name = "kernelshap"
    default_samples = 256

    def __init__(
        self, *, samples: int | None = None, seed: int = 0, max_samples: int | None = None
    ) -> None:
        super().__init__(samples=samples, seed=seed)
        self._adaptive = samples is None
        if self._adaptive:
            self.samples = int(max_samples) if max_samples is not None else DEFAULT_MAX_SAMPLES

    def adaptive(self) -> bool:
        """Without a fixed ``samples`` budget the explainer samples in rounds."""
        return self._adaptive

    def first_round(self, m: int) -> int:
        """Rows of the first round: the ends, sizes 1 and M−1, and as many sampled pairs."""
        if not self._adaptive:
            return self.samples
        return min(self.samples, 2 + 2 * m + 2 * max(8, m // 2))

    def design(self, perturber: Perturber, rng: np.random.Generator) -> Design:
        """Exact enumeration when affordable, else enumerated strata plus sampled pairs."""
        m = perturber.count
        if m <= MAX_EXACT_REGIONS and 2**m <= self.first_round(m):
            bits = np.arange(2**m)[:, None] >> np.arange(m)[None, :] & 1
            return _ShapDesign(z=bits.astype(np.float32), exact=True)
        budget = max(self.first_round(m) - 2, 2 * m)
        reserve = 2 * max(8, m // 2) if self._adaptive else 0
        design = _enumerate(m, budget, reserve)
        if len(design.strata):
            _draw(design, rng, budget - design.n_enum, _kernel_q(design))
        return design

    def extend(
        self,
        design: Design,
        focus: Focus,
        rng: np.random.Generator,
        rows: int,
    ) -> Design:
        """More sampled pairs, half of them drawn towards the unsettled comparisons."""
        if not isinstance(design, _ShapDesign) or design.exact or not len(design.strata):
            return design
        q = _kernel_q(design)
        spread = np.zeros(len(design.strata))
        for y, contrasts in focus:
            fit = _fit(design, y.astype(np.float64))
            if fit.influence is None or not contrasts:
                continue
            c = np.stack(contrasts) @ fit.to_phi  # (q, M-1)
            moved = (fit.influence @ fit.a_inv @ c.T) ** 2  # (D, q)
            per_draw = moved.sum(axis=1)
            for j in range(len(design.strata)):
                sel = design.draw_stratum == j
                if sel.any():
                    # what a pair of stratum j adds to the variance, at q(j) = 1
                    spread[j] += float(np.mean(per_draw[sel] * design.draw_q[sel] ** 2))
        if spread.sum() > 0:
            focused = np.sqrt(spread)
            q = 0.5 * q + 0.5 * focused / focused.sum()
        _draw(design, rng, rows, q)
        return design

    def estimate(self, design: Design, y: np.ndarray) -> Estimate:
        """Exact Shapley values, or the constrained weighted least-squares solution."""
        if not isinstance(design, _ShapDesign):
            raise TypeError("KernelShapExplainer.estimate takes the design it made")
        y = y.astype(np.float64)
        if design.exact:
            return _exact_shapley(design.z, y)
        fit = _fit(design, y)
        m = design.z.shape[1]
        cov = np.zeros((m, m))
        if fit.influence is not None and len(fit.influence) >= 2:
            v = _draw_variance(design, fit)
            cov = fit.to_phi @ fit.a_inv @ v @ fit.a_inv @ fit.to_phi.T
            cov = (cov + cov.T) / 2.0
        dof = max(len(design.draw_stratum) - 1, 1)
        z = design.z[2:].astype(np.float64)
        r2 = weighted_r2(y[2:] - y[0], z @ fit.phi, design.row_weights())
        return Estimate(
            weights=fit.phi,
            intercept=float(y[0]),
            fit_r2=r2,
            used_features=m,
            cov=cov,
            dof=float(dof),
        )


@dataclass
class _Fit:
    phi: np.ndarray  # (M,)
    a_inv: np.ndarray  # (M-1, M-1)
    to_phi: np.ndarray  # (M, M-1): phi = to_phi @ head + const
    influence: np.ndarray | None  # (D, M-1): each draw's mass/q · Σ x e over its pair
    pair_x: np.ndarray | None = None  # (D, 2, M-1): each draw's two rows
    resid: np.ndarray | None = None  # (2D,): the sampled rows' residuals


def _fit(design: _ShapDesign, y: np.ndarray) -> _Fit:
    """Constrained WLS: the last weight is eliminated by sum(phi) = f(all) − f(none)."""
    f0, f1 = float(y[0]), float(y[1])
    z = design.z[2:].astype(np.float64)
    yy = y[2:] - f0
    w = design.row_weights()
    total = f1 - f0
    x = z[:, :-1] - z[:, -1:]
    t = yy - z[:, -1] * total
    a = (x * w[:, None]).T @ x
    a_inv = np.linalg.pinv(a, hermitian=True)
    head = a_inv @ (x.T @ (w * t))
    phi = np.append(head, total - head.sum())
    m = z.shape[1]
    to_phi = np.vstack([np.eye(m - 1), -np.ones((1, m - 1))])
    d = len(design.draw_stratum)
    influence = pair_x = e = None
    if d:
        ne = design.n_enum
        e = t[ne:] - x[ne:] @ head
        xe = x[ne:] * e[:, None]
        pair = xe[0::2] + xe[1::2]
        influence = pair * (design.mass[design.draw_stratum] / design.draw_q)[:, None]
        pair_x = x[ne:].reshape(d, 2, -1)
    return _Fit(phi=phi, a_inv=a_inv, to_phi=to_phi, influence=influence, pair_x=pair_x, resid=e)


def _draw_variance(design: _ShapDesign, fit: _Fit) -> np.ndarray:
    """Variance of the sampled part of XᵀWe: the draws' own spread, shrunk towards a
    homoscedastic model of it while the draws are few.

    The draws are independent; rounds differ in q, so pooling them around one mean is
    conservative. With fewer draws than parameters that spread is rank-deficient (some
    contrasts would look certain), so it is averaged with the variance the same draws would
    have if every sampled row's residual had the pooled variance s², weighted D : 4(M−1)
    (at 2(M−1) the early stops covered 87% instead of 89% on the coverage test's grids).
    """
    g = fit.influence
    assert g is not None and fit.pair_x is not None and fit.resid is not None
    d, p = g.shape
    c = g - g.mean(axis=0)
    spread = c.T @ c / (d * (d - 1))
    scale = design.mass[design.draw_stratum] / design.draw_q  # (D,)
    s2 = float(np.mean(fit.resid**2))
    xx = np.einsum("d,drp,drq->pq", scale**2, fit.pair_x, fit.pair_x)
    model = s2 * xx / d**2
    return (d * spread + 4 * p * model) / (d + 4 * p)


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
        weights=phi,
        intercept=float(y[0]),
        fit_r2=weighted_r2(y, y[0] + z @ phi),
        used_features=m,
        cov=None,  # every coalition evaluated: the Shapley values have no sampling error
    )


def _enumerate(m: int, budget: int, reserve: int) -> _ShapDesign:
    """The ends and every coalition of the outer strata the budget affords; the rest to sample.

    A stratum is enumerated when the budget, shared in proportion to the kernel mass, would
    give it at least one draw per coalition (sizes 1 and M−1 also whenever ``reserve`` rows
    still remain for sampling after them).
    """
    n_strata = m // 2
    units = np.array(
        [math.comb(m, k) // (2 if 2 * k == m else 1) for k in range(1, n_strata + 1)], np.int64
    )
    row_w = np.array([(m - 1) / (math.comb(m, k) * k * (m - k)) for k in range(1, n_strata + 1)])
    mass = units * row_w
    share = mass / mass.sum()
    rows: list[np.ndarray] = [np.zeros(m, np.float32), np.ones(m, np.float32)]
    weights: list[float] = []
    left = budget
    k = 0
    while k < n_strata:
        count = 2 * int(units[k])
        if left * share[k] < count - 1e-8 and not (k == 0 and left - count >= reserve > 0):
            break
        left -= count
        for inds in itertools.combinations(range(m), k + 1):
            row = np.zeros(m, np.float32)
            row[list(inds)] = 1.0
            if 2 * (k + 1) == m and row[0] == 0:
                continue  # the middle stratum: each pair once, from the side holding region 0
            rows.extend([row, 1.0 - row])
            weights.extend([row_w[k], row_w[k]])
        if k + 1 < n_strata:
            share = share.copy()
            share[k + 1 :] /= share[k + 1 :].sum()
        k += 1
    z = np.asarray(rows, np.float32)
    return _ShapDesign(
        z=z,
        exact=False,
        enum_weights=np.asarray(weights, np.float64),
        strata=np.arange(k + 1, n_strata + 1, dtype=np.int64),
        mass=mass[k:],
        seen={r.tobytes() for r in z},
    )


def _kernel_q(design: _ShapDesign) -> np.ndarray:
    return design.mass / design.mass.sum()


def _draw(design: _ShapDesign, rng: np.random.Generator, rows: int, q: np.ndarray) -> None:
    """Append pairs drawn from ``q`` until about ``rows`` new distinct rows are in the design."""
    m = design.z.shape[1]
    new_rows: list[np.ndarray] = []
    strata: list[int] = []
    fresh = 0
    draws = 0
    first = len(design.draw_stratum) == 0
    # each pair adds at most two new rows: stop before the budget would be passed
    while (fresh < rows - 1 or (first and draws < 2)) and draws < 20 * max(rows, 2):
        j = int(rng.choice(len(q), p=q))
        row = np.zeros(m, np.float32)
        row[rng.permutation(m)[: int(design.strata[j])]] = 1.0
        for r in (row, 1.0 - row):
            key = r.tobytes()
            if key not in design.seen:
                design.seen.add(key)
                fresh += 1
        new_rows.extend([row, 1.0 - row])
        strata.append(j)
        draws += 1
    design.z = np.vstack([design.z, np.asarray(new_rows, np.float32)])
    idx = np.asarray(strata, np.int64)
    design.draw_stratum = np.concatenate([design.draw_stratum, idx])
    design.draw_q = np.concatenate([design.draw_q, q[idx]])
