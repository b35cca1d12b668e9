"""Faithfulness metrics and contrastive region sets, from deletion and insertion curves.

Regions are switched off (deletion) or on (insertion) in weight order, onto the configured
baseline; the class probability after each step gives a curve over k = 0..M regions, and its
trapezoid area over x = k/M is the AUC, in [0, 1]. With many regions the curve is evaluated at
the steps of ``curve_steps`` only (every step up to 4, then evenly spaced, about 12 points), and
the AUC is the trapezoid area through those points: exact at each of them, linear in between.
Low deletion AUC and high insertion AUC mean a faithful ranking. The same curves give the
sufficient set (fewest top-ranked regions that, shown alone, keep the class on top) and the
necessary set (fewest whose removal changes the top class); around the step where the class
appears or goes the skipped steps are evaluated too, so both sets stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def ranking(weights: np.ndarray) -> np.ndarray:
    """Region ids by weight, highest first (ties by id, so the order is deterministic)."""
    return np.lexsort((np.arange(len(weights)), -np.asarray(weights)))


#: Region counts up to which the curves are evaluated at every step.
FULL_CURVE_REGIONS = 16


def curve_steps(m: int) -> np.ndarray:
    """The steps k at which the curves are evaluated: all of 0..M for up to 16 regions, else
    every step up to 4 and 8 more evenly spaced up to M."""
    if m <= FULL_CURVE_REGIONS:
        return np.arange(m + 1)
    spaced = np.round(np.linspace(4, m, 9)).astype(np.int64)
    return np.unique(np.concatenate([np.arange(5), spaced]))


def curve_masks(
    order: np.ndarray, steps: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion masks (len(steps), M) for a ranking (default: every step)."""
    m = len(order)
    ks = (np.arange(m + 1) if steps is None else np.asarray(steps))[:, None]
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    inserted = (rank[None, :] < ks).astype(np.float32)
    return 1.0 - inserted, inserted


def auc(curve: np.ndarray, steps: np.ndarray | None = None) -> float:
    """Trapezoid area under a curve sampled at x = k/M (default: every k = 0..M)."""
    if len(curve) <= 1:
        return float(curve[0]) if len(curve) else 0.0
    ks = np.arange(len(curve)) if steps is None else np.asarray(steps, dtype=np.float64)
    x = ks / ks[-1]
    area = np.sum((curve[1:] + curve[:-1]) / 2.0 * np.diff(x))
    return float(np.clip(area, 0.0, 1.0))


def flip_gaps(
    steps: np.ndarray, class_index: int, deletion: np.ndarray, insertion: np.ndarray
) -> np.ndarray:
    """Steps not yet evaluated between the last evaluated step before the top class appears
    (insertion) or goes (deletion) and the step where it does: what the exact sufficient and
    necessary sets still need."""
    extra: list[int] = []
    for probs, keep in ((insertion, True), (deletion, False)):
        if not keep and int(np.argmax(probs[0])) != class_index:
            continue
        for j in range(1, len(steps)):
            if (int(np.argmax(probs[j])) == class_index) == keep:
                extra.extend(range(int(steps[j - 1]) + 1, int(steps[j])))
                break
    return np.asarray(sorted(set(extra) - set(int(k) for k in steps)), np.int64)


@dataclass
class Faithfulness:
    """Deletion/insertion AUCs and the contrastive region sets for one class."""

    deletion_auc: float
    insertion_auc: float
    sufficient: list[int]
    necessary: list[int]
    deletion_curve: list[float]
    insertion_curve: list[float]


def faithfulness(
    order: np.ndarray,
    class_index: int,
    deletion: np.ndarray,
    insertion: np.ndarray,
    steps: np.ndarray | None = None,
) -> Faithfulness:
    """Metrics from the probabilities (len(steps), C) along the deletion and insertion curves
    (default: every step 0..M)."""
    del_curve = deletion[:, class_index].astype(np.float64)
    ins_curve = insertion[:, class_index].astype(np.float64)
    ks = np.arange(len(order) + 1) if steps is None else np.asarray(steps)
    sufficient: list[int] = []
    for j in range(1, len(ks)):
        if int(np.argmax(insertion[j])) == class_index:
            sufficient = [int(i) for i in order[: ks[j]]]
            break
    necessary: list[int] = []
    if int(np.argmax(deletion[0])) == class_index:
        for j in range(1, len(ks)):
            if int(np.argmax(deletion[j])) != class_index:
                necessary = [int(i) for i in order[: ks[j]]]
                break
    return Faithfulness(
        deletion_auc=auc(del_curve, ks),
        insertion_auc=auc(ins_curve, ks),
        sufficient=sufficient,
        necessary=necessary,
        deletion_curve=[round(float(v), 6) for v in del_curve],
        insertion_curve=[round(float(v), 6) for v in ins_curve],
    )
