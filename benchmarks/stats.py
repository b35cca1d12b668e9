"""The benchmarks' one paired bootstrap: a 95% interval of the mean of paired differences."""

from __future__ import annotations

import numpy as np


def bootstrap_interval(
    diffs: np.ndarray, rng: np.random.Generator, draws: int = 5000
) -> tuple[float, float]:
    """Bootstrap 95% interval of the mean of ``diffs`` (resampled with replacement)."""
    diffs = np.asarray(diffs, np.float64)
    means = [diffs[rng.integers(0, len(diffs), len(diffs))].mean() for _ in range(draws)]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired(diffs: np.ndarray, rng: np.random.Generator, fmt: str = "+.3f") -> str:
    """``mean [low, high]`` of paired differences, for a table."""
    low, high = bootstrap_interval(diffs, rng)
    return f"{np.mean(diffs):{fmt}} [{low:{fmt}}, {high:{fmt}}]"
