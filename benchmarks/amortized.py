"""Method ``amortized`` against the per-image default, on a model limner trains.

    .venv/bin/python benchmarks/amortized.py --train 1000 --eval 50 --baseline gray

Generates a shapes data set (three classes, 96×96), trains the classifier (``limner train``'s
default, efficientnet-lite0 head), trains its explainer on ``--train`` training images (timed),
then on ``--eval`` validation images compares the explainer with the default (adaptive
KernelSHAP, 24 SLIC regions, the same baseline): the relative squared error Σ(φ̂ − φ)²/Σφ² of
the predicted class against near-exact values (KernelSHAP with ``--reference`` samples, the
efficiency-constrained fit), the deletion and insertion AUCs (paired bootstrap 95% intervals of
the differences), the seconds of the attributions and of the whole RESULT, the conformal
intervals' coverage of the near-exact values, and how often the check sends a bundled photo
(not a shape) to the default.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import data
from stats import paired

from limner import load_model
from limner.amortized import train_explainer
from limner.amortized.calibration import shapley_reference
from limner.datasets import make_shapes
from limner.explain import explain
from limner.explain.segmentation import region_map
from limner.training import load_image_folder, train

PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "rocket", "hubble_deep_field",
          "immunohistochemistry", "brick", "grass", "gravel")  # fmt: skip


def main() -> None:
    """Run the comparison and print its tables."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--eval", type=int, default=50)
    ap.add_argument("--baseline", default="gray")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--reference", type=int, default=4096)
    ap.add_argument("--width", type=int, default=32, help="the explainer network's width")
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-amortized-"))
    per_class = max(args.train, args.eval * 5) // 3 + 1
    make_shapes(root / "shapes", per_class=per_class, size=96,
                classes=["circle", "square", "triangle"], seed=0)  # fmt: skip
    train(root / "shapes", root / "model")
    model = load_model(str(root / "model"))
    images = load_image_folder(root / "shapes", 96)
    started = time.perf_counter()
    learned = train_explainer(
        model, list(images.train.images[: args.train]), baseline=args.baseline,
        pairs=args.pairs, width=args.width, epochs=args.epochs,
    )  # fmt: skip
    trained_s = time.perf_counter() - started
    cal = learned.calibration
    print(f"explainer: {learned.meta['training_images']} training images, "
          f"{learned.meta['epochs']} epochs (best {learned.meta['best_epoch']}), "
          f"{trained_s:.0f} s in all, held-out error {cal.heldout_error:.3f}\n")  # fmt: skip

    errors: dict[str, list[float]] = {"amortized": [], "default": []}
    aucs: dict[str, list[tuple[float, float]]] = {"amortized": [], "default": []}
    seconds: dict[str, list[float]] = {"amortized": [], "default": []}
    #: the attributions with their intervals alone (curves=False), segmentation included
    lean: dict[str, list[float]] = {"amortized": [], "default": []}
    covered = total = 0
    for i, img in enumerate(images.validation.images[: args.eval]):
        regions = region_map(img, "slic", 24)
        labels = regions.at_size(96, 96).astype(np.int32)
        top = int(np.argmax(model.predict(img[None])[0]))
        ref, _ = shapley_reference(model, img, labels, regions.count, baseline=args.baseline,
                                   samples=args.reference, seed=i)  # fmt: skip
        for name, kwargs in (("amortized", {"method": "amortized", "explainer": learned}),
                             ("default", {})):  # fmt: skip
            t = time.perf_counter()
            exp = explain(img, model, classes=[top], baseline=args.baseline, seed=i, **kwargs)
            seconds[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            explain(img, model, classes=[top], baseline=args.baseline, seed=i, curves=False,
                    **kwargs)  # fmt: skip
            lean[name].append(time.perf_counter() - t)
            c = exp.classes[0]
            phi = ref[top]
            errors[name].append(float(((c.weights - phi) ** 2).sum() / max((phi**2).sum(), 1e-12)))
            aucs[name].append((c.faithfulness.deletion_auc, c.faithfulness.insertion_auc))
            if name == "amortized" and exp.method == "amortized":
                inside = (c.interval[:, 0] <= phi) & (phi <= c.interval[:, 1])
                covered += int(inside.sum())
                total += len(phi)
    rng = np.random.default_rng(0)
    print("| method | rel. squared error, median (mean) | deletion AUC | insertion AUC |"
          " seconds, median | without curves, median |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for name in ("amortized", "default"):
        e = np.array(errors[name])
        a = np.array(aucs[name])
        print(f"| {name} | {np.median(e):.3f} ({e.mean():.3f}) | {a[:, 0].mean():.3f} | "
              f"{a[:, 1].mean():.3f} | {np.median(seconds[name]):.3f} | "
              f"{np.median(lean[name]):.4f} |")  # fmt: skip
    ratio = np.median(lean["amortized"]) / np.median(lean["default"])
    whole = np.median(seconds["amortized"]) / np.median(seconds["default"])
    print(f"\ntime, amortized / default: attributions alone {ratio:.3f}, RESULT {whole:.3f}")
    a, d = np.array(aucs["amortized"]), np.array(aucs["default"])
    dele = paired(a[:, 0] - d[:, 0], rng)
    ins = paired(a[:, 1] - d[:, 1], rng)
    print(f"\namortized − default, paired bootstrap 95%: deletion {dele}, insertion {ins}")
    print(
        f"conformal 90% intervals cover {covered}/{total} "
        f"({covered / max(total, 1):.1%}) of the near-exact values"
    )
    fired = 0
    for name in PHOTOS:
        photo = getattr(data, name)()
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        exp = explain(photo[..., :3], model, method="amortized", explainer=learned)
        fired += bool(exp.amortized and exp.amortized.get("fallback"))
    print(f"the check sent {fired}/{len(PHOTOS)} bundled photos to the default")


if __name__ == "__main__":
    main()
