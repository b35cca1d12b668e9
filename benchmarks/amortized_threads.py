"""An amortized explanation's time under two thread settings, paired per image.

    .venv/bin/python benchmarks/amortized_threads.py --compare head [--train 150] [--eval 40]
    .venv/bin/python benchmarks/amortized_threads.py --compare backbone [--train 150] [--eval 40]
    .venv/bin/python benchmarks/amortized_threads.py --compare pixels [--train 150] [--eval 40]

``--compare backbone``: the explainer's ONNX backbone threads left spinning after each run
(ONNX Runtime's default) or not (limner's setting). ``--compare head``: the explainer's trained head
on PyTorch (its threads, as many as the machine's cores) or exported to ONNX Runtime on one
thread that does not spin (limner's setting): PyTorch's threads, spinning after the head, slow
the model's next ONNX Runtime run, and the model's spinning threads slow a head on two.
``--compare pixels``: the image's conversion to the explainer's input (and with it the first
work PyTorch's threads wake for) made by PyTorch, or by NumPy (limner's setting).

Generates plain shapes (96×96, three classes), trains ``limner train``'s classifier and an
explainer on ``--train`` training images (a small one: the timing does not depend on its
quality), then explains ``--eval`` validation images with method ``amortized`` (gray baseline)
under both settings in alternating order, without curves and with them, and the per-image
default without curves once each for scale. Prints the medians and the paired difference with a
bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from amortized import classifier, shapes
from stats import paired

import limner.amortized.explainer as explainer_module
import limner.amortized.network as network
from limner.amortized import train_explainer
from limner.amortized.explainer import AmortizedExplainer
from limner.amortized.training import pixels
from limner.explain import explain
from limner.training import load_image_folder

#: limner's way of running the explainer's head (method ``read`` uses it).
head = AmortizedExplainer.head


def variants(compare: str) -> dict[str, Callable[[], None]]:
    """Each setting's name (limner's last) and what puts it in place."""
    if compare == "backbone":
        path = network._taps_session()._model_path
        spinning = network.taps_session(path, spin=True)
        resting = network.taps_session(path, spin=False)
        return {
            "spinning (ONNX Runtime's default)": lambda: setattr(
                network, "_taps_session", lambda: spinning
            ),
            "not spinning (limner)": lambda: setattr(network, "_taps_session", lambda: resting),
        }
    if compare == "pixels":
        numpy_made = explainer_module.pixels_array
        return {
            "PyTorch (its threads)": lambda: setattr(
                explainer_module, "pixels_array", lambda i, b: pixels(i, b).numpy()
            ),
            "NumPy (limner)": lambda: setattr(explainer_module, "pixels_array", numpy_made),
        }
    return {
        "PyTorch's threads (2)": lambda: setattr(AmortizedExplainer, "head", lambda self: None),
        "ONNX Runtime, one thread (limner)": lambda: setattr(AmortizedExplainer, "head", head),
    }


def main() -> None:
    """Train, time both settings, print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", choices=("head", "backbone", "pixels"), default="head")
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--eval", type=int, default=40)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-threads-"))
    shapes(root, args.train, args.eval, "plain")
    model = classifier(root)
    images = load_image_folder(root / "shapes", 96)
    learned = train_explainer(model, list(images.train.images[: args.train]), baseline="gray",
                              pairs=32, epochs=20)  # fmt: skip
    settings = variants(args.compare)
    seconds = {(name, curves): [] for name in settings for curves in (False, True)}
    default = []
    for i, img in enumerate(images.validation.images[: args.eval]):
        order = list(settings) if i % 2 == 0 else list(settings)[::-1]
        for curves in (False, True):
            for name in order:
                settings[name]()
                kwargs = {"method": "amortized", "explainer": learned, "curves": curves,
                          "baseline": "gray", "seed": i}  # fmt: skip
                explain(img, model, **kwargs)  # warm
                t = time.perf_counter()
                explain(img, model, **kwargs)
                seconds[name, curves].append(time.perf_counter() - t)
        t = time.perf_counter()
        explain(img, model, curves=False, baseline="gray", seed=i)
        default.append(time.perf_counter() - t)
    print(f"| {args.compare} threads | curves | ms, median | ms, mean | median / the default's "
          "median without curves |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: |")
    for (name, curves), values in seconds.items():
        v = np.array(values) * 1000
        print(f"| {name} | {'with' if curves else 'without'} | {np.median(v):.1f} | "
              f"{v.mean():.1f} | {np.median(values) / np.median(default):.3f} |")  # fmt: skip
    print(f"\nthe default without curves: median {np.median(default) * 1000:.1f} ms")
    before, mine = list(settings)
    for curves in (False, True):
        diff = (np.array(seconds[mine, curves]) - np.array(seconds[before, curves])) * 1000
        print(f"{mine} − {before}, {'with' if curves else 'without'} curves, ms: "
              f"{paired(diff, np.random.default_rng(0), '+.1f')}")  # fmt: skip


if __name__ == "__main__":
    main()
