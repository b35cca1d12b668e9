"""The cooperative games an explainer learns from: for each training image, a segmentation,
coalitions of its regions drawn from the Shapley kernel, and what the classifier says of each.

The value of a coalition S is v(S) = f(x_S) − f(baseline) per class, x_S the image with the
regions outside S replaced by the baseline (limner's :class:`~limner.explain.perturb.Perturber`,
as every method perturbs). Coalitions come in complementary pairs (S and its complement), the
size k of S drawn with the Shapley kernel's mass (M − 1) / (k (M − k)) and S uniformly among
that size: FastSHAP's (Jethani et al., ICLR 2022) sampling, whose least-squares fit of
Σ_{i∈S} φ_i to v(S) under the efficiency constraint has the Shapley values as its solution.

Each image gets its own segmentation, drawn from :data:`SEGMENTATIONS` (SLIC at several region
counts and square grids), so that the explainer's pixel map is taught to add up to Shapley
values whatever regions a user chooses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from limner.explain.perturb import Perturber
from limner.explain.segmentation import segment
from limner.models.base import Model

#: The segmentations drawn for training images: (algorithm, regions).
SEGMENTATIONS: tuple[tuple[str, int], ...] = (
    ("slic", 16),
    ("slic", 24),
    ("slic", 32),
    ("grid", 25),
    ("grid", 49),
)


@dataclass
class Games:
    """The games of ``n`` images at the classifier's input size.

    ``images`` (n, H, W, 3) uint8 and their ``bases`` (the baseline images); ``labels``
    (n, H, W) region ids; ``counts`` (n,) regions of
    each image; ``z`` (n, K, M) coalitions (1: the region is in; columns past an image's count
    are 0); ``values`` (n, K, C) their v(S); ``delta`` (n, C) = f(image) − f(baseline);
    ``full`` (n, C) = f(image).
    """

    images: np.ndarray
    bases: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    z: np.ndarray
    values: np.ndarray
    delta: np.ndarray
    full: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> Games:
        """The games of images ``idx``."""
        return Games(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def kernel_pairs(m: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``2 × pairs`` coalitions of ``m`` regions, in complementary pairs, sizes drawn with the
    Shapley kernel's mass; (2·pairs, m) float32."""
    sizes = np.arange(1, m)
    mass = (m - 1) / (sizes * (m - sizes))
    k = rng.choice(sizes, size=pairs, p=mass / mass.sum())
    z = np.zeros((pairs, m), np.float32)
    for row, size in zip(z, k, strict=True):
        row[rng.permutation(m)[:size]] = 1.0
    return np.concatenate([z, 1.0 - z])


def play(
    model: Model,
    images: Sequence[np.ndarray],
    *,
    pairs: int = 16,
    baseline: str = "blur",
    segmentations: Sequence[tuple[str, int]] = SEGMENTATIONS,
    seed: int = 0,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> Games:
    """The games of ``images`` (uint8, at the model's input size): ``2 × pairs`` coalitions
    each, every one evaluated by ``model``; ``progress(done, total)`` after each image."""
    rng = np.random.default_rng(seed)
    n = len(images)
    drawn = [segmentations[int(rng.integers(len(segmentations)))] for _ in range(n)]
    most = max(count for _, count in segmentations)
    k = 2 * pairs
    c = model.num_classes
    h, w = images[0].shape[:2]
    labels = np.zeros((n, h, w), np.int32)
    bases = np.zeros((n, h, w, 3), np.uint8)
    counts = np.zeros(n, np.int64)
    z = np.zeros((n, k, most), np.float32)
    values = np.zeros((n, k, c), np.float32)
    delta = np.zeros((n, c), np.float32)
    full = np.zeros((n, c), np.float32)
    pending: list[tuple[int, np.ndarray]] = []  # (image, its K + 2 model inputs)

    def flush() -> None:
        if not pending:
            return
        batch = np.concatenate([x for _, x in pending])
        p = model.predict_tensor(batch) if len(batch) else batch
        at = 0
        for i, x in pending:
            answers = np.asarray(p[at : at + len(x)], np.float32)
            at += len(x)
            full[i], base = answers[0], answers[1]
            delta[i] = full[i] - base
            values[i] = answers[2:] - base
        pending.clear()

    for i, image in enumerate(images):
        algorithm, count = drawn[i]
        regions = segment(image, algorithm, count).astype(np.int32)
        m = int(regions.max()) + 1
        labels[i], counts[i] = regions, m
        coalitions = kernel_pairs(m, pairs, rng) if m > 1 else np.ones((k, 1), np.float32)
        z[i, :, :m] = coalitions
        perturber = Perturber(image, regions, baseline, m, prepare=model.preprocess)
        bases[i] = perturber.base
        ends = np.vstack([np.ones((1, m), np.float32), np.zeros((1, m), np.float32)])
        pending.append((i, perturber.regions(np.vstack([ends, coalitions]))))
        if sum(len(x) for _, x in pending) >= batch_size:
            flush()
        if progress is not None:
            progress(i + 1, n)
    flush()
    return Games(
        images=np.stack(images), bases=bases, labels=labels, counts=counts, z=z,
        values=values, delta=delta, full=full,
    )  # fmt: skip
