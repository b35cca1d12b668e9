"""Method ``amortized`` against the per-image default, on a model limner trains.

    .venv/bin/python benchmarks/amortized.py --train 1000 --eval 50 --baseline gray
    .venv/bin/python benchmarks/amortized.py ... --preset plain     # the other data set
    .venv/bin/python benchmarks/amortized.py ... --keras            # a Keras model

Generates a shapes data set (three classes, 96×96, ``--preset textured`` or ``plain``), trains
the classifier (``limner train``'s default, efficientnet-lite0 head; with ``--keras`` the
classic Keras tutorial CNN, trained by Keras itself and loaded from its ``.keras`` file, as a
user's model would be), trains its explainer on ``--train`` training images (timed),
then on ``--eval`` validation images compares the explainer with the default (adaptive
KernelSHAP, 24 SLIC regions, the same baseline): the relative squared error Σ(φ̂ − φ)²/Σφ² of
the predicted class against near-exact values (KernelSHAP with ``--reference`` samples, the
efficiency-constrained fit), the deletion and insertion AUCs (paired bootstrap 95% intervals of
the differences), the seconds of the attributions and of the whole RESULT, the conformal
intervals' coverage of the near-exact values, and how often the check sends an image of
another data set (``--other`` images of the other preset, and the bundled photos) to the
default.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
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
from limner.models.base import Model
from limner.training import load_image_folder, train

PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "rocket", "hubble_deep_field",
          "immunohistochemistry", "brick", "grass", "gravel")  # fmt: skip


#: The benchmarks' three classes.
CLASSES = ["circle", "square", "triangle"]


def shapes(root: Path, train_images: int, eval_images: int, preset: str = "textured") -> None:
    """The three-shape data set (96×96, seed 0) in ``root / "shapes"``: ``train_images`` in
    ``train/`` (80% of each class) and at least ``5 × eval_images`` in all."""
    per_class = int(max(train_images / 0.8, eval_images * 5)) // 3 + 1
    make_shapes(root / "shapes", per_class=per_class, size=96, classes=CLASSES, seed=0,
                preset=preset)  # fmt: skip


def classifier(root: Path) -> Model:
    """``limner train``'s classifier of ``root / "shapes"``, saved in ``root / "model"``."""
    train(root / "shapes", root / "model")
    return load_model(str(root / "model"))


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
    ap.add_argument("--preset", choices=("textured", "plain"), default="textured")
    ap.add_argument("--keras", action="store_true", help="a Keras CNN trained outside limner")
    ap.add_argument("--other", type=int, default=50, help="images of the other preset")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-amortized-"))
    shapes(root, args.train, args.eval, args.preset)
    other = "plain" if args.preset == "textured" else "textured"
    make_shapes(root / "other", per_class=2 * args.other // 3 + 1, size=96, classes=CLASSES,
                seed=1, preset=other, validation_fraction=0.5)  # fmt: skip
    model = load_model(str(keras_classifier(root))) if args.keras else classifier(root)
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
        near = near_exact(model, img, args.baseline, args.reference, seed=i)
        top, ref = near.top, near.values
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
    gap = paired(np.array(errors["amortized"]) - np.array(errors["default"]), rng)
    print(f"\namortized − default, paired bootstrap 95%: deletion {dele}, insertion {ins}, "
          f"rel. squared error {gap}")  # fmt: skip
    print(
        f"conformal 90% intervals cover {covered}/{total} "
        f"({covered / max(total, 1):.1%}) of the near-exact values"
    )
    photos = []
    for name in PHOTOS:
        photo = getattr(data, name)()
        photos.append(np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3])
    others = load_image_folder(root / "other", 96)
    strangers = {
        f"{other} shapes": list(others.train.images[: args.other]),
        "bundled photos": photos,
        f"{args.preset} shapes (the explainer's own data set)": list(
            images.validation.images[args.eval : args.eval + args.other]
        ),
    }
    for what, pictures in strangers.items():
        fired = 0
        for picture in pictures:
            exp = explain(picture, model, method="amortized", explainer=learned, curves=False)
            fired += bool(exp.amortized and exp.amortized.get("fallback"))
        print(f"the check sent {fired}/{len(pictures)} {what} to the default")


@dataclass
class NearExact:
    """An image's 24 SLIC regions at the model's size, its predicted class, and near-exact
    Shapley values ``(C, M)`` with f(image) − f(baseline) ``(C,)``."""

    labels: np.ndarray
    count: int
    top: int
    values: np.ndarray
    delta: np.ndarray


def near_exact(model: Model, img: np.ndarray, baseline: str, samples: int, seed: int) -> NearExact:
    """KernelSHAP with ``samples`` coalitions (efficiency-constrained) on ``img``'s 24 SLIC
    regions: the reference both amortized benchmarks measure against."""
    regions = region_map(img, "slic", 24)
    w, h = model.input_size
    labels = regions.at_size(w, h).astype(np.int32)
    top = int(np.argmax(model.predict(img[None])[0]))
    values, delta = shapley_reference(model, img, labels, regions.count, baseline=baseline,
                                      samples=samples, seed=seed)  # fmt: skip
    return NearExact(labels, regions.count, top, values, delta)


def keras_classifier(root: Path) -> Path:
    """A small Keras CNN (Rescaling, three strided convolutions, global pooling, softmax)
    trained by Keras on the shapes data at 96×96 and saved as ``.keras``, with the labels
    beside it."""
    import json
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    data = load_image_folder(root / "shapes", 96)
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((96, 96, 3)),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(16, 5, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(data.classes), activation="softmax"),
    ])  # fmt: skip
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    net.fit(data.train.images.astype("float32"), data.train.labels, epochs=20, batch_size=32,
            validation_data=(data.validation.images.astype("float32"), data.validation.labels),
            verbose=2)  # fmt: skip
    folder = root / "keras"
    folder.mkdir()
    net.save(folder / "shapes_cnn.keras")
    (folder / "limner-model.json").write_text(json.dumps({
        "labels": list(data.classes), "artifact": "shapes_cnn.keras",
        "input": {"width": 96, "height": 96, "layout": "NHWC", "scale": 1.0},
        "output": "probabilities",
    }))  # fmt: skip
    return folder


if __name__ == "__main__":
    main()
