"""LIME for images, as in ``lime_image``: random region masks, an exponential kernel on the
cosine distance to the original, and a weighted ridge surrogate."""

from __future__ import annotations

import numpy as np

from limner.explain.methods.base import Design, Estimate, Explainer, ridge_estimate
from limner.explain.perturb import Perturber


class LimeExplainer(Explainer):
    """LIME: ``samples`` uniform random on/off masks, kernel width 0.25, ridge alpha 1.

    The weights' uncertainty is the posterior of the same ridge fit read as a Bayesian linear
    model (BayesLIME): ``uncertainty.ridge_posterior``."""

    name = "lime"
    default_samples = 1000

    kernel_width = 0.25
    alpha = 1.0

    def design(self, perturber: Perturber, rng: np.random.Generator) -> Design:
        """The original image first, then uniform random masks."""
        n_regions = perturber.count
        z = rng.integers(0, 2, size=(max(self.samples, 2), n_regions)).astype(np.float32)
        z[0] = 1.0
        return Design(z=z)

    def estimate(self, design: Design, y: np.ndarray) -> Estimate:
        """Weighted ridge fit of ``y`` on the masks."""
        z = design.z.astype(np.float64)
        norms = np.linalg.norm(z, axis=1)
        cos = z.sum(axis=1) / (np.maximum(norms, 1e-12) * np.sqrt(z.shape[1]))
        d = np.where(norms > 0, 1.0 - cos, 1.0)
        w = np.sqrt(np.exp(-(d**2) / self.kernel_width**2))
        return ridge_estimate(z, y.astype(np.float64), w, self.alpha)
