"""The amortized explainer's check: how often it sends images like the training ones to the
default, and how often it catches images of another data set, under two rules for its limits.

    .venv/bin/python benchmarks/amortized_check.py [--train 300] [--familiar 300] [--splits 50]

Generates plain shapes (96×96, three classes), trains ``limner train``'s classifier and an
explainer on ``--train`` training images (gray baseline), then computes the check's three
statistics (the efficiency gap, the coalitions' residual, the distance from the training
images' features) on ``--familiar`` new plain shapes (another seed of the same generator), on
60 textured shapes and on the ten bundled photos used by benchmarks/amortized.py. ``--splits``
times, 50 of the familiar images play the held-out images the limits are set on, and the rest
are checked against them:

- the 99th percentile of each statistic over the 50 (limner's rule before);
- :func:`limner.amortized.calibration.tail_limit` (limner's rule since): where a log-normal
  fitted to the 50 puts one familiar image in 10,000, never below their largest.

Prints, per rule, the share of familiar images sent to the default (mean and 5–95% over the
splits, and by which statistic) and the share of the other data sets' images caught.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from amortized import CLASSES, PHOTOS, classifier, shapes
from skimage import data

from limner.amortized import train_explainer
from limner.amortized.calibration import check_coalitions, check_statistics, tail_limit
from limner.amortized.explainer import AmortizedExplainer
from limner.datasets import make_shapes
from limner.explain.perturb import Perturber
from limner.explain.segmentation import region_map
from limner.imaging import resize
from limner.models.base import Model
from limner.training import load_image_folder

HELDOUT = 50
RULES = {
    "99th percentile (before)": lambda v: float(np.quantile(v, 0.99)),
    "log-normal tail, 1 in 10,000 (limner)": tail_limit,
}


def statistics(model: Model, learned: AmortizedExplainer, img: np.ndarray, seed: int) -> list:
    """The check's efficiency gap, residual and distance on one image (its predicted class)."""
    regions = region_map(img, "slic", 24)
    labels, m = regions.at_size(*model.input_size), regions.count
    perturber = Perturber(img, labels, learned.baseline, m, prepare=model.preprocess)

    def f(z: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_tensor(perturber.regions(z)), np.float64)

    full, base = f(np.ones((1, m), np.float32))[0], f(np.zeros((1, m), np.float32))[0]
    c, delta = int(np.argmax(full)), full - base
    phi, totals, distance = learned.read(perturber.image, perturber.base, labels, m, delta)
    z = check_coalitions(m, seed)
    v = f(z)[:, c] - base[c]
    gap, residual = check_statistics(
        phi[c, :m], float(totals[c]), float(delta[c]), z.astype(np.float64), v
    )
    return [gap, residual, distance]


def folder_images(root: Path) -> list[np.ndarray]:
    """Every image of a generated data set, both splits."""
    found = load_image_folder(root, 96)
    return list(found.train.images) + list(found.validation.images)


def photo(name: str) -> np.ndarray:
    """A bundled photo as RGB."""
    picture = getattr(data, name)()
    return np.stack([picture] * 3, axis=-1) if picture.ndim == 2 else picture[..., :3]


def main() -> None:
    """Train, compute the statistics, print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--familiar", type=int, default=300)
    ap.add_argument("--splits", type=int, default=50)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-check-"))
    shapes(root, args.train, 20, "plain")
    model = classifier(root)
    images = load_image_folder(root / "shapes", 96)
    learned = train_explainer(model, list(images.train.images[: args.train]), baseline="gray")
    make_shapes(root / "familiar", per_class=args.familiar // 3 + 1, size=96, classes=CLASSES,
                seed=1, preset="plain")  # fmt: skip
    make_shapes(root / "textured", per_class=20, size=96, classes=CLASSES, seed=2,
                preset="textured")  # fmt: skip
    sets = {
        "familiar": folder_images(root / "familiar")[: args.familiar],
        "textured": folder_images(root / "textured"),
        "photos": [resize(photo(name), 96, 96) for name in PHOTOS],
    }
    stats = {}
    for k, found in sets.items():
        rows = [
            statistics(model, learned, np.asarray(im)[..., :3], i) for i, im in enumerate(found)
        ]
        stats[k] = np.array(rows)
    rng = np.random.default_rng(0)
    own = stats["familiar"]
    print(f"explainer from {args.train} images; {len(own)} familiar images, "
          f"{args.splits} splits of {HELDOUT} held-out / {len(own) - HELDOUT} checked")  # fmt: skip
    print("\n| rule | familiar images sent to the default, mean (5–95%) | by gap / residual / "
          "distance | textured caught (by gap / residual / distance) | photos caught (by gap / "
          "residual / distance) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for name, rule in RULES.items():
        sent, by = [], []
        caught: dict[str, list] = {"textured": [], "photos": []}
        caught_by: dict[str, list] = {"textured": [], "photos": []}
        for _ in range(args.splits):
            idx = rng.permutation(len(own))
            held, checked = own[idx[:HELDOUT]], own[idx[HELDOUT:]]
            limits = np.array([rule(held[:, j]) for j in range(3)])
            sent.append((checked > limits).any(axis=1).mean())
            by.append((checked > limits).mean(axis=0))
            for k in caught:
                caught[k].append((stats[k] > limits).any(axis=1).mean())
                caught_by[k].append((stats[k] > limits).mean(axis=0))
        s, b = np.array(sent), np.mean(by, axis=0)
        others = [
            f"{np.mean(caught[k]):.1%} ({' / '.join(f'{x:.0%}' for x in np.mean(caught_by[k], 0))})"
            for k in caught
        ]
        print(
            f"| {name} | {s.mean():.2%} ({np.quantile(s, 0.05):.1%}–{np.quantile(s, 0.95):.1%}) "
            f"| {b[0]:.2%} / {b[1]:.2%} / {b[2]:.2%} | " + " | ".join(others) + " |"
        )
    print("\nquantiles 50 / 99 / max of gap, residual, distance:")
    for k, v in stats.items():
        q = np.quantile(v, [0.5, 0.99, 1.0], axis=0).T
        print(f"  {k}: " + "; ".join(" / ".join(f"{x:.3g}" for x in row) for row in q))


if __name__ == "__main__":
    main()
