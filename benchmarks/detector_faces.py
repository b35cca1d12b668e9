"""The built-in face detector explained: the astronaut photo's face box, default and D-RISE.

    .venv/bin/python benchmarks/detector_faces.py

Prints one table: the detector's time per call, and for the default (``kernelshap``) and
``drise`` the median seconds of three seeds, the model evaluations, the top region's share and
the deletion and insertion AUCs beside a random region order's.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from skimage import data

import limner
from limner.imaging import resize
from limner.models.haar import SIDE, opencv_faces


def main() -> None:
    """Run the benchmark and print its table."""
    detector = opencv_faces()
    photo = data.astronaut()
    small = resize(photo, SIDE, SIDE)[None]
    start = time.perf_counter()
    for _ in range(20):
        detector.detect(small)
    per_call = (time.perf_counter() - start) / 20
    print(f"opencv-faces: {per_call * 1000:.1f} ms a call at {SIDE}×{SIDE}\n")
    print("| method | seconds (median of 3 seeds) | evaluations | top region's share |"
          " deletion AUC (random) | insertion AUC (random) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for method in ("kernelshap", "drise"):
        seconds = []
        for seed in range(3):
            start = time.perf_counter()
            exp = limner.explain_detection(photo, detector, box=0, method=method, seed=seed)
            seconds.append(time.perf_counter() - start)
        d = exp.to_dict()
        item = d["explanations"][0]
        print(
            f"| {method} | {statistics.median(seconds):.2f} | {d['model_evaluations']} | "
            f"{item['regions'][0]['share']:.0f}% | {item['deletion_auc']:.3f} "
            f"({item['random_deletion_auc']:.3f}) | {item['insertion_auc']:.3f} "
            f"({item['random_insertion_auc']:.3f}) |"
        )
    assert np.isfinite(per_call)


if __name__ == "__main__":
    main()
