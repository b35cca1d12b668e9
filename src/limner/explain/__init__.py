"""The explanation engine: segmentation, perturbation, estimators, metrics and the RESULT."""

from limner.explain.engine import (
    DEFAULT_BASELINE,
    DEFAULT_METHOD,
    DEFAULT_SEGMENTATION,
    check_method,
    explain,
)
from limner.explain.methods import METHODS
from limner.explain.perturb import BASELINES
from limner.explain.result import PANES, ClassExplanation, Explanation
from limner.explain.segmentation import DEFAULT_SEGMENTS, SEGMENTATIONS, grid_shape

__all__ = [
    "BASELINES",
    "DEFAULT_BASELINE",
    "DEFAULT_METHOD",
    "DEFAULT_SEGMENTATION",
    "DEFAULT_SEGMENTS",
    "METHODS",
    "PANES",
    "SEGMENTATIONS",
    "ClassExplanation",
    "Explanation",
    "check_method",
    "explain",
    "grid_shape",
]
