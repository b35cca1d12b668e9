"""Gradient methods on the compare.py protocol: Integrated Gradients and Grad-CAM against the
default method and captum's own Integrated Gradients, on efficientnet-lite0.

The built-in network as a torch model (``TorchModel`` around efficientnet-lite0's PyTorch
module, eager float32 on the CPU): every method, limner's default included, runs its forward
passes and gradients on it, and captum's IG runs on the same module. Same photos, SLIC regions
(24) and region-mean baseline as compare.py; each method explains the predicted class with
seeds 0 and 1 (the gradient methods are deterministic, so their seeds agree). Deletion and
insertion AUC replay each method's region ranking with limner's metric, outside the timed part.
``--onnx`` runs the forward passes on ONNX Runtime instead (gradients stay in PyTorch).

    .venv/bin/python benchmarks/gradients.py [--photos 7] [--onnx] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from compare import BASELINE, PHOTOS, SEGMENTS, Case, Counter, load_photo, protocol

import limner
from limner.explain.perturb import Perturber
from limner.explain.segmentation import region_map


def limner_run(
    model: limner.Model, case: Case, seed: int, **settings: object
) -> tuple[np.ndarray, int]:
    f = Counter(model)
    exp = limner.explain(
        case.image,
        model,
        predict=f.tensor,
        classes=[case.target],
        segmentation="slic",
        segments=SEGMENTS,
        baseline=BASELINE,
        seed=seed,
        **settings,  # type: ignore[arg-type]
    )
    return exp.classes[0].weights, exp.model_evaluations


def captum_ig(model: limner.Model, case: Case, seed: int) -> tuple[np.ndarray, int]:
    """captum's IntegratedGradients as its tutorials use it: on the normalized input tensor,
    zero baseline, 50 steps, the class logit; pixel attributions summed per region."""
    import torch
    from captum.attr import IntegratedGradients

    forward = model.torch_forward()
    assert forward is not None
    module = forward.module
    x = torch.from_numpy(model.preprocess(case.image[None]))
    attr = IntegratedGradients(module).attribute(x, target=case.target, internal_batch_size=16)
    pixels = attr[0].sum(dim=0).detach().numpy()
    m = int(case.labels.max()) + 1
    return np.bincount(case.labels.ravel(), pixels.ravel(), m), 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    parser.add_argument("--out", default="", help="append the markdown table to this file")
    parser.add_argument(
        "--onnx", action="store_true", help="forward passes on ONNX Runtime (default: PyTorch)"
    )
    args = parser.parse_args()
    model = load(args.onnx)
    methods = {
        "limner kernelshap adaptive (default)": lambda c, s: limner_run(model, c, s),
        "limner integrated-gradients (steps until complete)": lambda c, s: limner_run(
            model, c, s, method="integrated-gradients"
        ),
        "limner integrated-gradients --steps 64": lambda c, s: limner_run(
            model, c, s, method="integrated-gradients", steps=64
        ),
        "limner gradcam": lambda c, s: limner_run(model, c, s, method="gradcam"),
        "captum IntegratedGradients (zero baseline, 50 steps)": lambda c, s: captum_ig(model, c, s),
    }
    cases = []
    for name in PHOTOS[: args.photos]:
        img = load_photo(name)
        labels = region_map(img, "slic", SEGMENTS).labels
        base = Perturber(img, labels, BASELINE).base
        cases.append(Case(name, img, labels, base, int(model.predict(img[None])[0].argmax())))
    load_before = os.getloadavg()[0]
    results: dict[str, tuple[list[float], list[int], list[float], list[float]]] = {
        mname: ([], [], [], []) for mname in methods
    }
    # methods interleaved per photo and seed, as in compare.py: a change in the machine's load
    # falls on every method alike
    for case in cases:
        for seed in (0, 1):
            for mname, run in methods.items():
                t = time.perf_counter()
                weights, n = run(case, seed)
                wall = time.perf_counter() - t
                d, i = protocol(case, weights, model)
                for store, value in zip(results[mname], (wall, n, d, i), strict=True):
                    store.append(value)  # type: ignore[arg-type]
                print(
                    f"{case.name} seed {seed} {mname}: {wall:.2f}s {n} passes "
                    f"del={d:.4f} ins={i:.4f}",
                    flush=True,
                )
    rows = [(mname, *results[mname]) for mname in methods]
    forward = "ONNX Runtime, gradients in eager PyTorch" if args.onnx else "eager PyTorch"
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load_before:.1f} before the run and {os.getloadavg()[0]:.1f} after; photos: "
        f"{', '.join(c.name for c in cases)}, seeds 0 and 1; efficientnet-lite0, forward passes "
        f"on {forward} (float32, CPU).",
        "",
        "| method | s / explanation | model passes (forward, or forward + backward) | "
        "deletion AUC ↓ | insertion AUC ↑ |",
        "|---|---|---|---|---|",
    ]
    for mname, secs, evals, dels, inss in rows:
        lines.append(
            f"| {mname} | {statistics.mean(secs):.2f} | {statistics.mean(evals):.0f} | "
            f"{statistics.mean(dels):.4f} | {statistics.mean(inss):.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(table + "\n")


def load(onnx: bool) -> limner.Model:
    """efficientnet-lite0 as a torch model (default), or on ONNX Runtime with its module."""
    if onnx:
        model = limner.load_model("efficientnet-lite0", device="cpu")
        model.torch_forward()  # load the PyTorch module before timing
        return model
    from limner.models.pytorch import TorchModel
    from limner.models.zoo import efficientnet_lite0_metadata, efficientnet_lite0_module

    return TorchModel(
        efficientnet_lite0_module(), efficientnet_lite0_metadata(), name="efficientnet-lite0"
    )


if __name__ == "__main__":
    main()
