"""The explainer contract shared by every method.

A method only decides *which* perturbations to evaluate (``design``) and *how* to turn the model's
answers into region weights (``estimate``); the engine owns segmentation, rendering, batching,
metrics and the RESULT. Settings are keyword-only and read back through ``params()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from limner.explain.perturb import Perturber
from limner.explain.uncertainty import ridge_posterior


@dataclass
class Design:
    """The perturbations a method asks for.

    ``z`` (n, M) holds each sample's region features (1 = region shown). ``images`` builds the
    images of rows ``[start, stop)``: regions switched on/off as in ``z``, unless a method's
    design renders its own (RISE's soft masks).
    """

    z: np.ndarray

    #: Whether the estimate from these rows is exact (every coalition enumerated).
    exact: bool = False

    #: Whether row i's image is exactly ``z[i]``'s regions on and the rest off (so its answer can
    #: be reused for the same mask elsewhere, as in the deletion and insertion curves).
    binary: bool = True

    def images(self, perturber: Perturber, start: int, stop: int) -> np.ndarray:
        """uint8 images (stop-start, h, w, 3) for rows ``[start, stop)``."""
        return perturber.regions(self.z[start:stop])


@dataclass
class Estimate:
    """Additive region weights for one class and the surrogate's quality of fit."""

    weights: np.ndarray  # (M,)
    intercept: float
    fit_r2: float
    used_features: int
    #: (M, M) covariance of the weights under the method's model of its estimator, and the
    #: degrees of freedom of the intervals (inf: normal). None when the weights have no sampling
    #: error (a deterministic method: occlusion, exhaustive KernelSHAP, the gradient methods):
    #: such an estimate gets no intervals and no ``settled`` verdict.
    cov: np.ndarray | None = None
    dof: float = float("inf")
    #: Each weight's interval half-width where the method gives it directly (the amortized
    #: method's split-conformal intervals) rather than through ``cov``.
    halfwidth: np.ndarray | None = None

    @property
    def deterministic(self) -> bool:
        """Whether the weights come without sampling uncertainty (``cov`` is None)."""
        return self.cov is None

    @property
    def stderr(self) -> np.ndarray:
        """Standard error of each weight."""
        if self.cov is None:
            return np.zeros(len(self.weights))
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


#: Per class whose ranking is not settled: its answers so far and the contrasts (vectors over
#: regions) that are not yet significant.
Focus = list[tuple[np.ndarray, list[np.ndarray]]]


class Explainer(ABC):
    """One attribution method over image regions."""

    name: ClassVar[str]
    default_samples: ClassVar[int]

    def __init__(self, *, samples: int | None = None, seed: int = 0) -> None:
        self.samples = int(samples) if samples is not None else self.default_samples
        self.seed = int(seed)

    def params(self) -> dict[str, int]:
        """The settings this explainer was made with."""
        return {"samples": self.samples, "seed": self.seed}

    def adaptive(self) -> bool:
        """Whether this explainer can add samples in rounds (``extend``)."""
        return False

    def round_rows(self, m: int) -> int:
        """Rows added by each later round (for ``m`` regions)."""
        return max(16, m)

    def extend(
        self,
        design: Design,
        focus: Focus,
        rng: np.random.Generator,
        rows: int,
    ) -> Design:
        """``design`` with about ``rows`` more rows, spent where ``focus`` is uncertain.

        ``focus`` holds, per class whose ranking is not settled, its answers so far and the
        contrasts (vectors over regions) that are not yet significant. The new rows come after
        the old ones, so the answers already computed stay valid.
        """
        raise NotImplementedError(f"{self.name} does not sample in rounds")

    @abstractmethod
    def design(self, perturber: Perturber, rng: np.random.Generator) -> Design:
        """The perturbations to evaluate for the image held by ``perturber``."""

    @abstractmethod
    def estimate(self, design: Design, y: np.ndarray) -> Estimate:
        """Region weights from the model's outputs ``y`` (n,) for one class."""


def weighted_r2(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> float:
    """Weighted coefficient of determination (1.0 when y is constant and fitted exactly)."""
    w = np.ones_like(y) if w is None else w
    mean = np.average(y, weights=w)
    ss_tot = float(np.sum(w * (y - mean) ** 2))
    ss_res = float(np.sum(w * (y - pred) ** 2))
    if ss_tot <= 1e-18:
        return 1.0 if ss_res <= 1e-18 else 0.0
    return 1.0 - ss_res / ss_tot


def weighted_ridge(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float
) -> tuple[np.ndarray, float]:
    """Weighted ridge regression with an unpenalised intercept: ``(coefficients, intercept)``."""
    sw = w / w.sum()
    xm = sw @ x
    ym = float(sw @ y)
    xc = (x - xm) * np.sqrt(w)[:, None]
    yc = (y - ym) * np.sqrt(w)
    a = xc.T @ xc + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(a, xc.T @ yc)
    return coef, ym - float(xm @ coef)


def ridge_estimate(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> Estimate:
    """A weighted ridge fit of ``y`` on ``z`` as an :class:`Estimate`: weights, intercept, R²,
    and the covariance of the fit read as a Bayesian linear model (LIME's and RISE's)."""
    coef, intercept = weighted_ridge(z, y, w, alpha)
    cov, dof = ridge_posterior(z, y, w, alpha, coef, intercept)
    return Estimate(
        weights=coef,
        intercept=intercept,
        fit_r2=weighted_r2(y, z @ coef + intercept, w),
        used_features=z.shape[1],
        cov=cov,
        dof=dof,
    )
