"""Near-exact Shapley values, and what the held-out images say of a trained explainer.

:func:`shapley_reference` estimates a game's Shapley values by KernelSHAP with many samples
(coalitions drawn from the Shapley kernel in complementary pairs, the efficiency-constrained
least-squares fit). On the held-out images :func:`calibrate` compares the explainer with it:

- the **held-out error**, the relative squared error Σ(φ̂ − φ)² / Σφ² of the predicted class;
- **split-conformal scores** |φ̂ᵢ − φᵢ| / σ, σ = (|f(x) − f(b)| + 0.05) / M, whose quantile at
  the asked confidence is the half-width of every region's interval in units of σ (split
  conformal prediction: the intervals cover new images' values with that probability, as far
  as the held-out images are exchangeable with them);
- the **check's** distribution on images like the training ones: the efficiency gap (how far
  the raw region sums are from f(x) − f(b)) and the residual of a few coalitions evaluated on
  the image (:func:`check_coalitions`), both in units of |f(x) − f(b)| + 0.05, and the image's
  distance from the training images' features (the network's own, Mahalanobis). Each limit
  (:func:`tail_limit`) is where a log-normal fitted to the held-out images' values puts one
  familiar image in :data:`CHECK_FALSE_RATE`, and never below the largest held-out value: an
  image past it is outside what the explainer learned, not the tail of what it did learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from limner.amortized.games import Games, kernel_pairs
from limner.explain.perturb import Perturber
from limner.models.base import Model

#: Coalition pairs the check evaluates on an explained image.
CHECK_PAIRS = 4
#: The floor added to |f(x) − f(b)| in the check's and the intervals' units.
FLOOR = 0.05
#: How rarely an image like the held-out ones may pass one of the check's limits (each limit's
#: target false-alarm rate; a 99th percentile of 50 held-out images had sent about 8% of
#: familiar images to the default, docs/benchmarks.md "The check's limits").
CHECK_FALSE_RATE = 1e-4


def tail_limit(values: Sequence[float] | np.ndarray, rate: float = CHECK_FALSE_RATE) -> float:
    """The value a familiar image exceeds with probability ``rate`` (0 < rate < 1), as a
    log-normal fitted to the held-out ``values`` puts it, never below their largest.

    The fit is robust: the logs' median and median absolute deviation, so that one stray value
    (an exact zero among the positive statistics, say) cannot stretch it and switch the check
    off; values that are not finite are left out. Fewer than three values give their largest.
    The fit is a model of the tail, not a guarantee: for a statistic that piles up near zero
    (the efficiency gap, an absolute value) it puts the limit further out than the rate says."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("inf")
    top = float(x.max())
    if len(x) < 3:
        return top
    logs = np.log(np.maximum(x, max(float(np.median(x)) * 1e-6, 1e-300)))
    centre = float(np.median(logs))
    spread = 1.4826 * float(np.median(np.abs(logs - centre)))  # the normal's σ from the MAD
    z = float(NormalDist().inv_cdf(1.0 - rate))
    return max(top, float(np.exp(centre + z * spread)))


@dataclass
class Calibration:
    """The held-out images' verdict on an explainer (stored in its ``limner-explainer.json``)."""

    heldout_error: float  # median relative squared error, predicted class
    heldout_images: int
    scores: list[float]  # sorted conformal scores
    gap_limit: float
    residual_limit: float
    reference_samples: int
    #: The largest distance from the training images' features a familiar image has
    #: (:func:`tail_limit` of the held-out images'); None: not checked.
    distance_limit: float | None = None

    def halfwidth(self, confidence: float) -> float:
        """The conformal quantile of the scores at ``confidence`` (finite-sample corrected)."""
        n = len(self.scores)
        rank = min(n - 1, int(np.ceil((n + 1) * confidence)) - 1)
        return float(self.scores[max(rank, 0)])


def check_coalitions(m: int, seed: int) -> np.ndarray:
    """The coalitions the check evaluates on an image of ``m`` regions."""
    return kernel_pairs(m, CHECK_PAIRS, np.random.default_rng(seed))


def check_statistics(
    phi: np.ndarray, raw_total: float, delta: float, z: np.ndarray, values: np.ndarray
) -> tuple[float, float]:
    """The efficiency gap and the coalitions' residual of one class, in units of
    |delta| + FLOOR: ``phi`` (M,) the efficient values, ``raw_total`` the raw maps' sum."""
    unit = abs(delta) + FLOOR
    gap = abs(raw_total - delta) / unit
    residual = float(np.sqrt(np.mean((z @ phi - values) ** 2))) / unit
    return float(gap), residual


def shapley_reference(
    model: Model,
    image: np.ndarray,
    labels: np.ndarray,
    m: int,
    *,
    baseline: str,
    samples: int,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Near-exact Shapley values ``(C, M)`` of every class and f(x) − f(b) ``(C,)``: KernelSHAP
    with ``samples`` coalitions, constrained to add up to f(x) − f(b)."""
    perturber = Perturber(image, labels, baseline, m, prepare=model.preprocess)
    z = kernel_pairs(m, max(samples // 2, m), np.random.default_rng(seed))
    ends = np.vstack([np.ones((1, m), np.float32), np.zeros((1, m), np.float32)])
    rows = np.vstack([ends, z])
    p = np.concatenate([
        np.asarray(model.predict_tensor(perturber.regions(rows[s : s + batch_size])), np.float64)
        for s in range(0, len(rows), batch_size)
    ])  # fmt: skip
    delta = p[0] - p[1]
    return constrained_fit(z.astype(np.float64), p[2:] - p[1], delta), delta


def constrained_fit(z: np.ndarray, v: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """(C, M): the least-squares fit of ``v`` (K, C) by ``z`` (K, M) whose weights add up to
    ``delta`` (C,) (the Lagrangian's closed form)."""
    m = z.shape[1]
    a = z.T @ z + 1e-9 * np.eye(m)
    a_b = np.linalg.solve(a, z.T @ v)  # (M, C)
    a_1 = np.linalg.solve(a, np.ones(m))  # (M,)
    lam = (a_b.sum(axis=0) - delta) / a_1.sum()
    return (a_b - a_1[:, None] * lam[None, :]).T


def calibrate(
    predict_values: Callable[[Games], tuple[np.ndarray, np.ndarray]],
    model: Model,
    heldout: Games,
    *,
    distances: Callable[[Games], np.ndarray] | None = None,
    baseline: str,
    samples: int = 1024,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Compare the explainer with near-exact values on the ``heldout`` games' images.

    ``predict_values(games)`` gives the explainer's efficient values ``(n, C, M)`` and the raw
    sums' totals ``(n, C)``; ``distances(games)`` each image's distance from the training
    images' features."""
    phi_hat, raw_totals = predict_values(heldout)
    errors: list[float] = []
    scores: list[float] = []
    gaps: list[float] = []
    residuals: list[float] = []
    for i in range(len(heldout)):
        m = int(heldout.counts[i])
        ref, delta = shapley_reference(
            model, heldout.images[i], heldout.labels[i], m,
            baseline=baseline, samples=samples, seed=seed + i,
        )  # fmt: skip
        top = int(np.argmax(heldout.full[i]))
        est = phi_hat[i, top, :m]
        errors.append(float(((est - ref[top]) ** 2).sum() / max((ref[top] ** 2).sum(), 1e-12)))
        sigma = (abs(delta[top]) + FLOOR) / m
        scores.extend((np.abs(est - ref[top]) / sigma).tolist())
        z = check_coalitions(m, seed + i)
        perturber = Perturber(
            heldout.images[i], heldout.labels[i], baseline, m, prepare=model.preprocess
        )
        v = np.asarray(model.predict_tensor(perturber.regions(z)), np.float64)[:, top]
        base = heldout.full[i, top] - heldout.delta[i, top]
        gap, residual = check_statistics(
            est, float(raw_totals[i, top]), float(heldout.delta[i, top]), z, v - base
        )
        gaps.append(gap)
        residuals.append(residual)
        if progress is not None:
            progress(i + 1, len(heldout))
    return Calibration(
        heldout_error=float(np.median(errors)),
        heldout_images=len(heldout),
        scores=sorted(float(s) for s in scores),
        gap_limit=tail_limit(gaps),
        residual_limit=tail_limit(residuals),
        reference_samples=samples,
        distance_limit=(None if distances is None else tail_limit(distances(heldout))),
    )
