"""How sure an estimate is: intervals from a standard error, and whether a ranking is settled.

Every method's ``estimate`` gives region weights with a covariance matrix (see
docs/architecture.md for each method's model of its estimator). From it come each region's
interval at the requested confidence and the answer to one question per class: are the top
regions' order and signs settled? A ranking is settled when, at that confidence, each of the
top ``k`` regions (by absolute weight) has a sign its interval does not cross, and each of them
is larger in absolute weight than the next one (the k-th than the (k+1)-th included), judged on
the difference of the two weights with its own variance (covariances included).
"""

from __future__ import annotations

import math

import numpy as np

#: Default confidence of the intervals.
DEFAULT_CONFIDENCE = 0.9
#: How many top regions must be settled for the adaptive default to stop.
DEFAULT_SETTLE_TOP = 3


def quantile(confidence: float, dof: float = math.inf) -> float:
    """Two-sided critical value: Student's t with ``dof`` degrees of freedom (normal if inf)."""
    from scipy import stats

    p = 0.5 + confidence / 2.0
    if not math.isfinite(dof) or dof > 1e6:
        return float(stats.norm.ppf(p))
    return float(stats.t.ppf(p, max(dof, 1.0)))


def unsettled_contrasts(
    weights: np.ndarray, cov: np.ndarray | None, k: int, q: float
) -> list[np.ndarray]:
    """Contrast vectors c (c·w should be > 0) that are not yet significant; empty: settled.

    For each of the top ``k`` regions by absolute weight: its signed weight (sign settled), and
    the signed difference to the next region in that order (order settled).
    """
    w = np.asarray(weights, dtype=np.float64)
    m = len(w)
    if m == 0:
        return []
    cov = np.zeros((m, m)) if cov is None else cov
    order = np.lexsort((np.arange(m), -np.abs(w)))
    sign = np.where(w >= 0, 1.0, -1.0)
    top = min(k, m)
    out: list[np.ndarray] = []
    for j in range(top):
        a = int(order[j])
        c = np.zeros(m)
        c[a] = sign[a]
        if not _significant(c, w, cov, q):
            out.append(c)
        if j + 1 < m:
            b = int(order[j + 1])
            d = np.zeros(m)
            d[a], d[b] = sign[a], -sign[b]
            if not _significant(d, w, cov, q):
                out.append(d)
    return out


def _significant(c: np.ndarray, w: np.ndarray, cov: np.ndarray, q: float) -> bool:
    value = float(c @ w)
    var = max(float(c @ cov @ c), 0.0)
    return value > q * math.sqrt(var) and value > 0.0


def intervals(weights: np.ndarray, stderr: np.ndarray, q: float) -> np.ndarray:
    """(M, 2) lower and upper ends ``weight ∓ q·stderr``."""
    w = np.asarray(weights, dtype=np.float64)
    s = np.asarray(stderr, dtype=np.float64)
    return np.stack([w - q * s, w + q * s], axis=1)


def ridge_posterior(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float, coef: np.ndarray, intercept: float
) -> tuple[np.ndarray, float]:
    """Posterior covariance of a weighted ridge fit read as a Bayesian linear model, and its dof.

    The ridge penalty is a Gaussian prior N(0, σ²/alpha) on each coefficient and sample i has
    noise variance σ²/wᵢ; σ² (what the surrogate cannot explain) gets its usual estimate from
    the weighted residuals. The coefficients' posterior is then Student-t with n − p − 1 degrees
    of freedom, centred on the fit, with covariance σ² (XᵀWX + alpha·I)⁻¹ on the centred
    features (BayesLIME's posterior, with an empirical noise variance in place of its
    inverse-gamma hyper-prior).
    """
    n, p = x.shape
    sw = w / w.sum()
    xc = (x - sw @ x) * np.sqrt(w)[:, None]
    resid = y - (x @ coef + intercept)
    dof = max(n - p - 1, 1)
    sigma2 = float(np.sum(w * resid**2)) / dof
    cov = sigma2 * np.linalg.inv(xc.T @ xc + alpha * np.eye(p))
    return (cov + cov.T) / 2.0, float(dof)
