"""Faithfulness metrics and contrastive region sets, from deletion and insertion curves.

Regions are switched off (deletion) or on (insertion) in weight order, onto the configured
baseline; the class probability after each step gives a curve over k = 0..M regions, and its
trapezoid area over x = k/M is the AUC, in [0, 1]. Low deletion AUC and high insertion AUC mean a
faithful ranking. The same curves give the sufficient set (fewest top-ranked regions that, shown
alone, keep the class on top) and the necessary set (fewest whose removal changes the top class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def ranking(weights: np.ndarray) -> np.ndarray:
    """Region ids by weight, highest first (ties by id, so the order is deterministic)."""
    return np.lexsort((np.arange(len(weights)), -np.asarray(weights)))


def curve_masks(order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion masks (M+1, M) for a ranking."""
    m = len(order)
    steps = np.arange(m + 1)[:, None]
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    inserted = (rank[None, :] < steps).astype(np.float32)
    return 1.0 - inserted, inserted


def auc(curve: np.ndarray) -> float:
    """Trapezoid area under a curve sampled at k/M, k = 0..M."""
    m = len(curve) - 1
    if m <= 0:
        return float(curve[0]) if len(curve) else 0.0
    return float(np.clip(np.sum((curve[1:] + curve[:-1]) / 2.0) / m, 0.0, 1.0))


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
    order: np.ndarray, class_index: int, deletion: np.ndarray, insertion: np.ndarray
) -> Faithfulness:
    """Metrics from the probabilities (M+1, C) along the deletion and insertion curves."""
    del_curve = deletion[:, class_index].astype(np.float64)
    ins_curve = insertion[:, class_index].astype(np.float64)
    m = len(order)
    sufficient: list[int] = []
    for k in range(1, m + 1):
        if int(np.argmax(insertion[k])) == class_index:
            sufficient = [int(i) for i in order[:k]]
            break
    necessary: list[int] = []
    if int(np.argmax(deletion[0])) == class_index:
        for k in range(1, m + 1):
            if int(np.argmax(deletion[k])) != class_index:
                necessary = [int(i) for i in order[:k]]
                break
    return Faithfulness(
        deletion_auc=auc(del_curve),
        insertion_auc=auc(ins_curve),
        sufficient=sufficient,
        necessary=necessary,
        deletion_curve=[round(float(v), 6) for v in del_curve],
        insertion_curve=[round(float(v), 6) for v in ins_curve],
    )
