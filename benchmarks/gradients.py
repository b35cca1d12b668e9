"""Gradient methods on the compare.py protocol: Integrated Gradients and Grad-CAM against the
default method and captum's own Integrated Gradients, on efficientnet-lite0.

The built-in model as limner loads it: forward passes on ONNX Runtime, gradients from the same
network's PyTorch module (eager, float32, CPU); captum's IG runs on that PyTorch module. Same
photos, SLIC regions (24) and region-mean baseline as compare.py; each method explains the
predicted class once (the gradient methods are deterministic, so one seed). Deletion and
insertion AUC replay each method's region ranking with limner's metric, outside the timed part.

    .venv/bin/python benchmarks/gradients.py [--photos 7] [--out docs/benchmarks.md]
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


def limner_run(model: limner.Model, case: Case, **settings: object) -> tuple[np.ndarray, int]:
    f = Counter(model)
    exp = limner.explain(
        case.image,
        model,
        predict=f.tensor,
        classes=[case.target],
        segmentation="slic",
        segments=SEGMENTS,
        baseline=BASELINE,
        **settings,  # type: ignore[arg-type]
    )
    return exp.classes[0].weights, exp.model_evaluations


def captum_ig(model: limner.Model, case: Case) -> tuple[np.ndarray, int]:
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
    args = parser.parse_args()
    onnx_model = limner.load_model("efficientnet-lite0", device="cpu")
    onnx_model.torch_forward()  # load the PyTorch module before timing
    methods = {
        "limner kernelshap-256 (default)": lambda c: limner_run(onnx_model, c),
        "limner integrated-gradients": lambda c: limner_run(
            onnx_model, c, method="integrated-gradients"
        ),
        "limner gradcam": lambda c: limner_run(onnx_model, c, method="gradcam"),
        "captum IntegratedGradients (zero baseline, 50 steps)": lambda c: captum_ig(onnx_model, c),
    }
    cases = []
    for name in PHOTOS[: args.photos]:
        img = load_photo(name)
        labels = region_map(img, "slic", SEGMENTS).labels
        base = Perturber(img, labels, BASELINE).base
        cases.append(Case(name, img, labels, base, int(onnx_model.predict(img[None])[0].argmax())))
    rows = []
    for mname, run in methods.items():
        secs, evals, dels, inss = [], [], [], []
        for case in cases:
            t = time.perf_counter()
            weights, n = run(case)
            secs.append(time.perf_counter() - t)
            evals.append(n)
            d, i = protocol(case, weights, onnx_model)
            dels.append(d)
            inss.append(i)
        rows.append((mname, secs, evals, dels, inss))
        print(
            f"{mname}: {statistics.mean(secs):.1f}s del={statistics.mean(dels):.4f} "
            f"ins={statistics.mean(inss):.4f}",
            flush=True,
        )
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs while "
        f"this ran); photos: {', '.join(c.name for c in cases)}; efficientnet-lite0: "
        "forward passes on ONNX Runtime, gradients in eager PyTorch (float32).",
        "",
        "| method | s / explanation | model passes (forward, or forward + backward) | "
        "deletion AUC ↓ | insertion AUC ↑ |",
        "|---|---|---|---|---|",
    ]
    for mname, secs, evals, dels, inss in rows:
        lines.append(
            f"| {mname} | {statistics.mean(secs):.1f} | {statistics.mean(evals):.0f} | "
            f"{statistics.mean(dels):.4f} | {statistics.mean(inss):.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(table + "\n")


if __name__ == "__main__":
    main()
