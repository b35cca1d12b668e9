"""Warnings a RESULT carries when an explanation should not be read at face value."""

from __future__ import annotations

import numpy as np

#: Fit R² below this is called low.
LOW_R2 = 0.3
#: Fewer regions than this make a ranking say little.
MIN_REGIONS = 4
#: A region covering more than this share of the image.
LARGE_REGION = 0.5


def class_warnings(
    fit_r2: float,
    areas: np.ndarray,
    settled: bool | None,
    stop_reason: str,
    confidence: float,
    segmentation_note: str | None = None,
) -> list[str]:
    """One-line warnings for one explained class (empty when nothing is off)."""
    out: list[str] = [segmentation_note] if segmentation_note else []
    if fit_r2 < 0:
        out.append(
            f"negative fit R² ({fit_r2:.2f}): the additive surrogate explains the model's "
            "answers worse than their mean"
        )
    elif fit_r2 < LOW_R2:
        out.append(f"low fit R² ({fit_r2:.2f}): the regions interact more than weights can say")
    m = len(areas)
    if m < MIN_REGIONS:
        out.append(f"only {m} regions: too few for a ranking to mean much")
    total = float(np.sum(areas)) or 1.0
    big = int(np.argmax(areas)) if m else 0
    if m and areas[big] / total > LARGE_REGION:
        out.append(
            f"region {big} covers {100 * areas[big] / total:.0f}% of the image: "
            "ask for more segments"
        )
    if settled is False and stop_reason in ("max_samples", "budget"):
        out.append(
            f"the top regions' order is not settled at {100 * confidence:.0f}% confidence "
            "within the sample budget: compare the intervals before trusting the ranking"
        )
    return out
