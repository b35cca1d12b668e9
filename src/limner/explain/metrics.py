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

Beside each AUC stands its random-order reference: the mean AUC of the same curve along random
region orders (8, drawn from the explanation's seed; every order when there are at most 5 regions,
which makes it exact), on a coarser grid of 7 evenly spaced points, 8 for an odd region count
(every step up to 7 regions).
Insertion along an order switches on exactly the sets that deletion along the reversed order
leaves on, and a reversed random order is as random as the order itself, so one set of masks
gives both references, and on a grid symmetric about M/2 they are the same number: for random
orders, switching regions off and switching them on are one process read in opposite directions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

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
    #: mean AUCs of the same curves along random region orders (None: not measured)
    random_deletion_auc: float | None = None
    random_insertion_auc: float | None = None


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


#: Random region orders the reference AUCs average over, and the region count up to which every
#: order is taken instead (the exact expectation: at most 2**5 distinct masks).
RANDOM_ORDERS = 8
EXACT_REFERENCE_REGIONS = 5
#: Evenly spaced points of the random-order curves, both ends included.
REFERENCE_POINTS = 7
#: Mixed into the explanation's seed, so the random orders do not share the sampling's stream.
_REFERENCE_STREAM = 0x5EED0DE5


def reference_steps(m: int) -> np.ndarray:
    """Steps of the random-order curves: 7 evenly spaced from 0 to M (8 for an odd M), symmetric
    (k is a step exactly when M − k is); every step up to 7 regions."""
    half = np.linspace(0, m, REFERENCE_POINTS)[: (REFERENCE_POINTS + 1) // 2]
    left = np.floor(half + 0.5).astype(np.int64)
    return np.unique(np.concatenate([left, m - left]))


@dataclass
class RandomOrders:
    """Region orders drawn uniformly at random and the steps their curves are evaluated at."""

    orders: np.ndarray  # (n, M)
    steps: np.ndarray
    #: whether ``orders`` holds every order (the references are then expectations, not estimates)
    exact: bool = False

    @cached_property
    def masks(self) -> np.ndarray:
        """The deletion masks of every order, order after order: (n × len(steps), M)."""
        return np.vstack([curve_masks(o, self.steps)[0] for o in self.orders])


def random_orders(m: int, seed: int) -> RandomOrders:
    """The random orders of an explanation with ``m`` regions and ``seed``: every order for up
    to 5 regions, else 8 drawn from the seed (the same seed gives the same orders)."""
    if m <= EXACT_REFERENCE_REGIONS:
        every = np.array(list(itertools.permutations(range(m))), dtype=np.int64)
        return RandomOrders(every, np.arange(m + 1), exact=True)
    rng = np.random.default_rng([int(seed), _REFERENCE_STREAM])
    orders = np.stack([rng.permutation(m) for _ in range(RANDOM_ORDERS)])
    return RandomOrders(orders, reference_steps(m))


def random_reference(
    reference: RandomOrders, answers: np.ndarray, class_index: int
) -> tuple[float, float]:
    """The random-order reference ``(deletion AUC, insertion AUC)`` of one class, from the
    probabilities (len(masks), C) of ``reference.masks``.

    Each order's deletion curve, read backwards, is the insertion curve of the reversed order,
    and the steps are symmetric, so both have the same area: the two references are equal.
    """
    n, k = len(reference.orders), len(reference.steps)
    curves = np.asarray(answers, np.float64)[:, class_index].reshape(n, k)
    area = float(np.mean([auc(c, reference.steps) for c in curves]))
    return area, area
