"""Method ``amortized``: a trained explainer's one forward pass, checked on the image itself.

The explainer (:mod:`limner.amortized`) maps the image to per-class pixel maps; summed over
the image's regions and made efficient (they add up to f(image) − f(baseline)), they are the
region weights. Two model evaluations beside f(image) are needed for that (the baseline), and
:data:`~limner.amortized.calibration.CHECK_PAIRS` × 2 more check the weights on the image: the
coalitions' residual and the raw maps' efficiency gap, against what the held-out images reached
(:class:`~limner.amortized.calibration.Calibration`), and so is the image's distance from the
training images' features. Past any, the image is outside what the explainer learned, and the
engine explains it with the per-image default instead, saying so.

Each region's interval is split conformal: the held-out scores' quantile at the confidence,
times σ = (|f(x) − f(b)| + 0.05) / M.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from limner.amortized.calibration import FLOOR, check_coalitions, check_statistics
from limner.errors import InvalidInputError
from limner.explain.methods.base import Estimate, weighted_r2
from limner.models.base import Model

if TYPE_CHECKING:  # the explainer needs torch: imported when method amortized is used
    from limner.amortized.explainer import AmortizedExplainer

METHOD = "amortized"


def learned_explainer(
    method: str, explainer: AmortizedExplainer | str | Path | None, model: Model
) -> AmortizedExplainer | None:
    """The trained explainer of method ``amortized`` (loaded from its folder), checked against
    ``model``; None for the other methods."""
    if method != METHOD:
        if explainer is not None:
            raise InvalidInputError("explainer= applies to method amortized only")
        return None
    if explainer is None:
        raise InvalidInputError(
            "method amortized needs explainer= (a folder from limner explainer train)"
        )
    from limner.amortized.explainer import AmortizedExplainer, load_explainer

    learned = explainer if isinstance(explainer, AmortizedExplainer) else load_explainer(explainer)
    learned.fits(model)
    return learned


@dataclass
class AmortizedEstimates:
    """The weights of the explained classes, the check's verdict and the RESULT's field."""

    estimates: list[Estimate]
    outside: bool
    info: dict[str, Any]


def amortized_estimates(
    learned: AmortizedExplainer,
    image: np.ndarray,
    base_image: np.ndarray,
    labels: np.ndarray,
    m: int,
    full: np.ndarray,
    base: np.ndarray,
    check_values: np.ndarray,
    chosen: list[int],
    confidence: float,
    seed: int,
) -> AmortizedEstimates:
    """Region weights of ``chosen`` classes (``image``, its ``base_image`` and ``labels`` at
    the model's size), with
    conformal half-widths, checked on ``check_values`` (the model's answers to
    :func:`check_coalitions` ``(m, seed)``)."""
    delta = full - base
    phi, totals, distance = learned.read(image, base_image, labels, m, delta)
    z = check_coalitions(m, seed).astype(np.float64)
    cal = learned.calibration
    q = cal.halfwidth(confidence)
    estimates = []
    worst_gap = worst_residual = 0.0
    for c in chosen:
        v = check_values[:, c] - base[c]
        gap, residual = check_statistics(phi[c, :m], float(totals[c]), float(delta[c]), z, v)
        worst_gap, worst_residual = max(worst_gap, gap), max(worst_residual, residual)
        sigma = (abs(float(delta[c])) + FLOOR) / m
        estimates.append(
            Estimate(
                weights=phi[c, :m].astype(np.float64),
                intercept=float(base[c]),
                fit_r2=weighted_r2(v, z @ phi[c, :m]),
                used_features=m,
                halfwidth=np.full(m, q * sigma),
            )
        )
    unfamiliar = cal.distance_limit is not None and distance > cal.distance_limit
    outside = unfamiliar or worst_gap > cal.gap_limit or worst_residual > cal.residual_limit
    info = {
        "heldout_error": round(cal.heldout_error, 6),
        "trained_on": learned.meta.get("training_images"),
        "model_sha256": learned.meta["model"].get("sha256"),
        "intervals": f"split conformal, {len(cal.scores)} held-out scores",
        "check": {
            "efficiency_gap": round(worst_gap, 6),
            "gap_limit": round(cal.gap_limit, 6),
            "residual": round(worst_residual, 6),
            "residual_limit": round(cal.residual_limit, 6),
            "coalitions": len(z),
            "distance": round(distance, 6),
            "distance_limit": None if cal.distance_limit is None else round(cal.distance_limit, 6),
        },
        "outside": bool(outside),
    }
    return AmortizedEstimates(estimates, outside, info)
