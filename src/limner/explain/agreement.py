"""How far explanations of one image on the same regions agree: rank correlation, top overlap,
and the regions they disagree on.

Pure computation on region weights (one array per explanation, indexed by region id, all on
the same segmentation): no model, no database.

- The **Spearman** rank correlation of two explanations' weights over every region (``None``
  when either gives every region the same weight: a rank correlation is then undefined).
- The **top-k overlap**: how many of the k regions with the highest weight (the ones that raise
  the class most, ties broken by region id as in the RESULT's order) the two share.
- **Disagreements**: a region in some explanation's top k but not in another's; a region that
  raises the class in one explanation and lowers it in another. A weight within
  :data:`NEUTRAL_FRACTION` of an explanation's largest absolute weight counts as neither sign
  (the RESULT's positive and negative regions leave it out as well), so noise around zero is
  no disagreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from limner.explain.metrics import ranking

#: Regions compared at the top of each explanation.
TOP_K = 3
#: A weight whose magnitude is below this fraction of the explanation's largest counts as zero.
NEUTRAL_FRACTION = 0.005


@dataclass(frozen=True)
class PairAgreement:
    """How explanations ``a`` and ``b`` (column indices) agree."""

    a: int
    b: int
    #: Spearman's rank correlation of the weights over every region (None: undefined).
    spearman: float | None
    #: The regions in both explanations' top k, in ``a``'s order.
    shared_top: list[int]
    #: k (at most the number of regions).
    top_k: int

    @property
    def top_overlap(self) -> int:
        """How many of the top k regions the two share."""
        return len(self.shared_top)


@dataclass(frozen=True)
class Disagreement:
    """A region the explanations disagree on.

    ``kind`` is ``top`` (``inside`` are the columns with the region in their top k, ``outside``
    the others) or ``sign`` (``inside`` are the columns where it raises the class, ``outside``
    those where it lowers it; columns where it is neutral are in neither).
    """

    region: int
    kind: str
    inside: list[int]
    outside: list[int]


def _column(weights: np.ndarray | Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError("region weights must be one value per region")
    return w


def _columns(columns: Sequence[np.ndarray | Sequence[float]]) -> list[np.ndarray]:
    cols = [_column(c) for c in columns]
    if len({len(c) for c in cols}) > 1:
        raise ValueError("every explanation must weigh the same regions")
    return cols


def top_regions(weights: np.ndarray | Sequence[float], k: int = TOP_K) -> list[int]:
    """The ``k`` regions with the highest weight, highest first (ties by region id)."""
    return [int(i) for i in ranking(_column(weights))[:k]]


def signs(weights: np.ndarray | Sequence[float]) -> np.ndarray:
    """+1 (raises the class), -1 (lowers it) or 0 (neutral) for every region."""
    w = _column(weights)
    threshold = float(np.abs(w).max(initial=0.0)) * NEUTRAL_FRACTION
    return np.where(w > threshold, 1, np.where(w < -threshold, -1, 0))


def spearman(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float | None:
    """Spearman's rank correlation of two weight vectors (None when either is constant or
    there are fewer than two regions)."""
    x, y = _columns([a, b])
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rho = float(stats.spearmanr(x, y).statistic)
    return None if np.isnan(rho) else rho


def pair_agreement(
    a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], k: int = TOP_K
) -> PairAgreement:
    """How two explanations' weights agree (``a`` and ``b`` of the result are 0 and 1)."""
    x, y = _columns([a, b])
    k = min(k, len(x))
    top_b = set(top_regions(y, k))
    shared = [r for r in top_regions(x, k) if r in top_b]
    return PairAgreement(a=0, b=1, spearman=spearman(x, y), shared_top=shared, top_k=k)


def agreement(
    columns: Sequence[np.ndarray | Sequence[float]], k: int = TOP_K
) -> list[PairAgreement]:
    """Every pair of explanations (i < j, in order) and how they agree."""
    cols = _columns(columns)
    out = []
    for i, j in combinations(range(len(cols)), 2):
        pair = pair_agreement(cols[i], cols[j], k)
        out.append(PairAgreement(i, j, pair.spearman, pair.shared_top, pair.top_k))
    return out


def disagreements(
    columns: Sequence[np.ndarray | Sequence[float]], k: int = TOP_K
) -> list[Disagreement]:
    """The regions the explanations disagree on: by region id, a ``top`` disagreement before a
    ``sign`` one."""
    cols = _columns(columns)
    if len(cols) < 2:
        return []
    k = min(k, len(cols[0]))
    tops = [set(top_regions(c, k)) for c in cols]
    sign = [signs(c) for c in cols]
    out: list[Disagreement] = []
    for region in range(len(cols[0])):
        inside = [i for i, t in enumerate(tops) if region in t]
        if inside and len(inside) < len(cols):
            outside = [i for i in range(len(cols)) if i not in inside]
            out.append(Disagreement(region, "top", inside, outside))
        up = [i for i, s in enumerate(sign) if s[region] > 0]
        down = [i for i, s in enumerate(sign) if s[region] < 0]
        if up and down:
            out.append(Disagreement(region, "sign", up, down))
    return out
