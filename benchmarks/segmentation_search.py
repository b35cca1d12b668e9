"""SLIC's search for the requested region count: runs and milliseconds per image, with the
search settling after three runs on a count within ±20% (limner) and without (before).

    .venv/bin/python benchmarks/segmentation_search.py [--shapes 60]

A region count is a staircase in SLIC's scale (its seeds are a grid), so a target between two
steps is not reached by more runs; before, the search tried up to 8. On ``--shapes`` plain and
``--shapes`` textured generated shapes (96×96) and the 25 224×224 images of
benchmarks/robustness.py (the bundled photos and their corner crops), 24 regions, both settings
on every image in alternating order: the mean runs, the milliseconds (mean and median), the
mean distance of the count from 24, and the paired difference of the milliseconds with a
bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

import numpy as np
from amortized import CLASSES
from robustness import images as photos
from stats import paired

from limner.datasets import make_shapes
from limner.training import load_image_folder

segmentation = importlib.import_module("limner.explain.segmentation")
SETTINGS = {"8 runs at most (before)": segmentation.MAX_TRIES, "settles after 3 (limner)": 3}
TARGET = 24


def shapes(root: Path, preset: str, n: int) -> list[np.ndarray]:
    """``n`` generated shapes of ``preset``."""
    make_shapes(root / preset, per_class=n // 3 + 1, size=96, classes=CLASSES, seed=3,
                preset=preset)  # fmt: skip
    found = load_image_folder(root / preset, 96)
    return (list(found.train.images) + list(found.validation.images))[:n]


def main() -> None:
    """Segment every image under both settings; print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", type=int, default=60)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="limner-search-"))
    sets = {
        "plain shapes, 96×96": shapes(root, "plain", args.shapes),
        "textured shapes, 96×96": shapes(root, "textured", args.shapes),
        "photos and crops, 224×224": list(photos().values()),
    }
    run = segmentation._run
    print("| images | search | runs, mean | ms, mean | ms, median | mean |count − 24| |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    diffs = {}
    for name, found in sets.items():
        seconds = {s: [] for s in SETTINGS}
        runs = {s: [] for s in SETTINGS}
        miss = {s: [] for s in SETTINGS}
        for i, img in enumerate(found):
            order = list(SETTINGS) if i % 2 == 0 else list(SETTINGS)[::-1]
            for setting in order:
                segmentation.SETTLE_TRIES = SETTINGS[setting]
                calls = [0]

                def counted(*a, calls=calls):  # type: ignore[no-untyped-def]
                    calls[0] += 1
                    return run(*a)

                segmentation._run = counted
                t = time.perf_counter()
                labels = segmentation.segment(img, "slic", TARGET)
                seconds[setting].append(time.perf_counter() - t)
                runs[setting].append(calls[0])
                miss[setting].append(abs(int(labels.max()) + 1 - TARGET))
        segmentation._run = run
        for setting in SETTINGS:
            ms = np.array(seconds[setting]) * 1000
            print(f"| {name} | {setting} | {np.mean(runs[setting]):.2f} | {ms.mean():.1f} | "
                  f"{np.median(ms):.1f} | {np.mean(miss[setting]):.2f} |")  # fmt: skip
        before, mine = list(SETTINGS)
        diffs[name] = (np.array(seconds[mine]) - np.array(seconds[before])) * 1000
    print()
    for name, d in diffs.items():
        print(f"{name}: settles − before, ms an image: "
              f"{paired(d, np.random.default_rng(0), '+.1f')}")  # fmt: skip


if __name__ == "__main__":
    main()
