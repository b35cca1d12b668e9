"""Occlusion: each region switched off alone; its weight is the drop it causes."""

from __future__ import annotations

import numpy as np

from limner.explain.methods.base import Design, Estimate, Explainer
from limner.explain.perturb import Perturber


class OcclusionExplainer(Explainer):
    """M + 1 evaluations: the whole image, then each region off in turn (``samples`` unused)."""

    name = "occlusion"
    default_samples = 0

    def params(self) -> dict[str, int]:
        """Occlusion has no sample budget; only the seed is recorded."""
        return {"samples": 0, "seed": self.seed}

    def design(self, perturber: Perturber, rng: np.random.Generator) -> Design:
        """The whole image, then one row per region with that region off."""
        n_regions = perturber.count
        z = np.ones((n_regions + 1, n_regions), dtype=np.float32)
        z[np.arange(1, n_regions + 1), np.arange(n_regions)] = 0.0
        return Design(z=z)

    def estimate(self, design: Design, y: np.ndarray) -> Estimate:
        """weight_j = f(image) - f(image without region j)."""
        full = float(y[0])
        weights = full - y[1:].astype(np.float64)
        # the additive model reproduces every evaluated point exactly
        return Estimate(
            weights=weights,
            intercept=full - float(weights.sum()),
            fit_r2=1.0,
            used_features=len(weights),
            # each weight is one exact difference of two model answers: no sampling error
            cov=None,
        )
