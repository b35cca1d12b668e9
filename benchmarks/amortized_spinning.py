"""An amortized explanation without curves, with the explainer's ONNX backbone threads left
spinning after each run (ONNX Runtime's default) or not (limner's setting), paired per image.

    .venv/bin/python benchmarks/amortized_spinning.py [--train 150] [--eval 40]

Generates plain shapes (96×96, three classes), trains ``limner train``'s classifier and an
explainer on ``--train`` training images (a small one: the timing does not depend on its
quality), then explains ``--eval`` validation images with method ``amortized``
(``curves=False``, gray baseline) under both settings in alternating order, and the per-image
default once each for scale. Prints the medians and the paired difference of the means with a
bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from amortized import classifier, shapes
from stats import paired

import limner.amortized.network as network
from limner.amortized import train_explainer
from limner.explain import explain
from limner.training import load_image_folder


def session(path: str, spin: bool) -> ort.InferenceSession:
    """The backbone's session with the service's threads, spinning or not."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("LIMNER_THREADS", 0)) or (os.cpu_count() or 1)
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main() -> None:
    """Train, time both settings, print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--eval", type=int, default=40)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-spinning-"))
    shapes(root, args.train, args.eval, "plain")
    model = classifier(root)
    images = load_image_folder(root / "shapes", 96)
    learned = train_explainer(model, list(images.train.images[: args.train]), baseline="gray",
                              pairs=32, epochs=20)  # fmt: skip
    path = network._taps_session()._model_path
    sessions = {"spinning (ONNX Runtime's default)": session(path, True),
                "not spinning (limner)": session(path, False)}  # fmt: skip
    seconds: dict[str, list[float]] = {k: [] for k in sessions}
    default = []
    for i, img in enumerate(images.validation.images[: args.eval]):
        order = list(sessions) if i % 2 == 0 else list(sessions)[::-1]
        for name in order:
            network._taps_session = lambda s=sessions[name]: s  # type: ignore[misc]
            kwargs = {"method": "amortized", "explainer": learned, "curves": False,
                      "baseline": "gray", "seed": i}  # fmt: skip
            explain(img, model, **kwargs)  # warm
            t = time.perf_counter()
            explain(img, model, **kwargs)
            seconds[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        explain(img, model, curves=False, baseline="gray", seed=i)
        default.append(time.perf_counter() - t)
    print("| backbone threads | ms, median | ms, mean | median / default's median |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in seconds.items():
        v = np.array(values) * 1000
        print(f"| {name} | {np.median(v):.1f} | {v.mean():.1f} | "
              f"{np.median(values) / np.median(default):.3f} |")  # fmt: skip
    print(f"\nthe default without curves: median {np.median(default) * 1000:.1f} ms")
    names = list(seconds)
    diff = (np.array(seconds[names[1]]) - np.array(seconds[names[0]])) * 1000
    print(f"not spinning − spinning, ms: {paired(diff, np.random.default_rng(0), '+.1f')}")


if __name__ == "__main__":
    main()
