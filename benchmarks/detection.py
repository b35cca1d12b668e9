"""Explaining one box: limner's default (adaptive KernelSHAP on 24 SLIC regions) against D-RISE.

Generated 640×480 scenes (``limner.datasets.scenes``) and the classical colour detector; on
each scene the best-scoring box is explained by both. D-RISE's map (``--masks`` masks of
16×16 cells) is read on the default's regions (each region, the sum of the map over it). Both
rankings are scored by the same protocol: deletion and insertion curves over every step, the
regions switched to the blurred photo, the target being D-RISE's similarity to the box. The
AUC differences get a paired bootstrap 95% interval over the scenes.

    .venv/bin/python benchmarks/detection.py [--scenes 10] [--masks 4000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from stats import bootstrap_interval

from limner.datasets.scenes import colour_detector, scene
from limner.explain.detection import box_target, drise_map, explain_detection, pick_target
from limner.explain.metrics import auc, curve_masks, ranking
from limner.explain.perturb import Perturber
from limner.models.base import Model

WIDTH, HEIGHT = 640, 480


def curves_auc(model: Model, photo: np.ndarray, labels: np.ndarray, weights: np.ndarray):
    """Deletion and insertion AUC of the ranking of ``weights`` (every step, blur baseline)."""
    order = ranking(weights)
    m = len(weights)
    pert = Perturber(photo, labels, "blur", m)
    dele, ins = curve_masks(order)
    p = np.concatenate([model.predict(pert.regions(z[i : i + 32]))[:, 0] for z in (dele, ins)
                        for i in range(0, len(z), 32)])  # fmt: skip
    return auc(p[: m + 1]), auc(p[m + 1 :])


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--masks", type=int, default=4000)
    args = parser.parse_args()
    detector = colour_detector(WIDTH, HEIGHT)
    rows = []
    load = os.getloadavg()[0]
    warm, _ = scene(10_000, WIDTH, HEIGHT)  # first calls (imports, caches) are not timed
    explain_detection(warm, detector, samples=16)
    drise_map(warm, detector, pick_target(detector.detect(warm[None])[0], 2), masks_count=64)
    for seed in range(args.scenes):
        photo, _objects = scene(seed, WIDTH, HEIGHT)
        t0 = time.perf_counter()
        exp = explain_detection(photo, detector, seed=seed)
        t_default = time.perf_counter() - t0
        target = pick_target(detector.detect(photo[None])[0], len(detector.labels))
        t0 = time.perf_counter()
        sal = drise_map(photo, detector, target, masks_count=args.masks, cells=16, seed=seed)
        t_drise = time.perf_counter() - t0
        labels = exp.explanation.regions.at_size(WIDTH, HEIGHT)
        m = exp.explanation.regions.count
        drise_weights = np.bincount(labels.ravel(), weights=sal.ravel(), minlength=m)
        model = box_target(detector, target)
        d_del, d_ins = curves_auc(model, photo, labels, exp.explanation.classes[0].weights)
        r_del, r_ins = curves_auc(model, photo, labels, drise_weights)
        rows.append(
            (t_default, t_drise, d_del, r_del, d_ins, r_ins, exp.explanation.samples,
             exp.explanation.model_evaluations)
        )  # fmt: skip
        print(
            f"scene {seed}: default {t_default:.2f} s ({exp.explanation.samples} samples), "
            f"D-RISE {t_drise:.2f} s; deletion {d_del:.3f} / {r_del:.3f}, "
            f"insertion {d_ins:.3f} / {r_ins:.3f}",
            flush=True,
        )
    a = np.array(rows, dtype=np.float64)
    ratio = a[:, 0] / a[:, 1]
    del_diff = a[:, 2] - a[:, 3]  # lower deletion is better: > 0 means the default is worse
    ins_diff = a[:, 4] - a[:, 5]  # higher insertion is better: < 0 means the default is worse
    lo_d, hi_d = bootstrap_interval(del_diff, np.random.default_rng(0))
    lo_i, hi_i = bootstrap_interval(ins_diff, np.random.default_rng(0))
    print()
    print(
        f"{args.scenes} scenes of {WIDTH}×{HEIGHT}, the best-scoring box each; "
        f"{os.cpu_count()} cores, load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print()
    print(
        "| method | s / box (median) | model evaluations (median) | deletion AUC ↓ (mean) "
        "| insertion AUC ↑ (mean) |"
    )
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| limner default (kernelshap, 24 SLIC regions, {int(np.median(a[:, 6]))} samples) "
        f"| {np.median(a[:, 0]):.2f} | {int(np.median(a[:, 7]))} | {a[:, 2].mean():.4f} "
        f"| {a[:, 4].mean():.4f} |"
    )
    print(
        f"| D-RISE, {args.masks} masks of 16×16 cells | {np.median(a[:, 1]):.2f} | {args.masks} "
        f"| {a[:, 3].mean():.4f} | {a[:, 5].mean():.4f} |"
    )
    print()
    print(
        f"time, default / D-RISE: median {np.median(ratio):.3f} (max {ratio.max():.3f}); "
        f"deletion, default − D-RISE: {del_diff.mean():+.4f} [95%: {lo_d:+.4f} to {hi_d:+.4f}]; "
        f"insertion, default − D-RISE: {ins_diff.mean():+.4f} [95%: {lo_i:+.4f} to {hi_i:+.4f}]"
    )


if __name__ == "__main__":
    main()
