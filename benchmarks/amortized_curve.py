"""The amortized explainer's error against its training images and time.

    .venv/bin/python benchmarks/amortized_curve.py --images 1000 --eval 40

Generates the shapes data set of benchmarks/amortized.py (textured, three classes, 96×96),
trains its classifier, plays the explainer's games once on ``--images`` training images (a
fifth held out for early stopping), then trains the explainer's head on growing shares of the
rest and prints, for each, the games' seconds (at the measured rate per image, the held-out
images' included), the head's training seconds, and the relative squared error Σ(φ̂ − φ)²/Σφ²
of the predicted class on ``--eval`` validation images against KernelSHAP with
``--reference`` samples at 24 SLIC regions (gray baseline). Last, with the head trained on
all of them, how many of ``--other`` images of the other data set (the plain preset) and of
the explainer's own validation images lie past the distance check's limit (its
``tail_limit`` of the held-out images' distances, as the calibration sets it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from amortized import CLASSES, classifier, near_exact, shapes

from limner.amortized.calibration import tail_limit
from limner.amortized.explainer import AmortizedExplainer
from limner.amortized.games import play
from limner.amortized.training import fit, pixels
from limner.datasets import make_shapes
from limner.explain.perturb import Perturber
from limner.training import load_image_folder


def main() -> None:
    """Play the games once, train on growing shares, print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--eval", type=int, default=40)
    ap.add_argument("--reference", type=int, default=4096)
    ap.add_argument("--other", type=int, default=50)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-amortized-curve-"))
    shapes(root, args.images, args.eval)
    model = classifier(root)
    images = load_image_folder(root / "shapes", 96)
    pictures = list(images.train.images[: args.images])
    started = time.perf_counter()
    games = play(model, pictures, pairs=64, baseline="gray")
    per_image = (time.perf_counter() - started) / len(pictures)
    order = np.random.default_rng(0).permutation(len(games))
    cut = round(0.2 * len(games))
    held, pool = games.subset(order[:cut]), order[cut:]
    validation = images.validation.images[: args.eval]
    refs = [near_exact(model, img, "gray", args.reference, seed=i)
            for i, img in enumerate(validation)]  # fmt: skip
    print(
        "| training images | games (s) | head training (s) | epochs | rel. error, median (mean) |"
    )
    print("| --- | --- | --- | --- | --- |")
    n = len(pool)
    for share in (8, 4, 2, 1):
        part = games.subset(pool[: n // share])
        t = time.perf_counter()
        net, report = fit(part, held, width=32)
        trained = time.perf_counter() - t
        learned = AmortizedExplainer(net, {})
        errors = []
        for img, near in zip(validation, refs, strict=True):
            base = Perturber(img, near.labels, "gray", near.count).base
            phi, _, _ = learned.read(img, base, near.labels, near.count, near.delta)
            est, ref = phi[near.top], near.values[near.top]
            errors.append(float(((est - ref) ** 2).sum() / (ref**2).sum()))
        print(f"| {len(part)} | {per_image * (len(part) + cut):.0f} | {trained:.0f} | "
              f"{len(report.train_loss)} (best {report.best_epoch + 1}) | "
              f"{np.median(errors):.3f} ({np.mean(errors):.3f}) |", flush=True)  # fmt: skip
    make_shapes(root / "other", per_class=2 * args.other // 3 + 1, size=96, preset="plain",
                classes=CLASSES, seed=1,
                validation_fraction=0.5)  # fmt: skip
    others = load_image_folder(root / "other", 96).train.images[: args.other]
    own = images.validation.images[args.eval : args.eval + args.other]

    def distances(pictures: np.ndarray) -> np.ndarray:
        gray = np.full_like(pictures, 128)
        with torch.no_grad():
            return net.distance(pixels(pictures, gray)).numpy()

    with torch.no_grad():
        net.familiarize(net.features(pixels(part.images, part.bases)))
        limit = tail_limit(net.distance(pixels(held.images, held.bases)).numpy())
    print(f"\nthe distance check (limit {limit:.1f}) sends {(distances(others) > limit).sum()}"
          f"/{len(others)} plain shapes and {(distances(own) > limit).sum()}/{len(own)} of "
          "its own validation images to the default")  # fmt: skip


if __name__ == "__main__":
    main()
