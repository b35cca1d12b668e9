"""The per-image default against lime_image-1000 on 35 images × 3 seeds, with paired intervals.

compare.py's protocol (efficientnet-lite0 on 224×224 photos, one region map per image, the
region-mean baseline, each ranking replayed by the same deletion and insertion curves at every
step) on more images: the 7 photos of compare.py and 4 distinct 224×224 crops (the corners)
of each of 7 larger bundled images. Two region maps: 24 SLIC regions and a 7×7 grid. Each
method explains every image with seeds 0, 1 and 2; an image's AUC is the mean over its seeds,
and each difference from lime_image-1000 gets a paired bootstrap 95% interval over images.
Methods: the default (adaptive KernelSHAP), lime_image-1000 (batch 64), and at a fixed 256
samples limner's KernelSHAP design against uniform-over-sizes sampling of coalition sizes (the
size distribution of Leverage SHAP, Musco & Witter, ICLR 2025; same constrained estimate) and
against the same draws fitted with a third-order term per triangle of adjacent regions
(PolySHAP-style: the 4-neighbourhood for SLIC, with the diagonals for the grid, whose
4-neighbourhood has no triangles). ``--variants-only`` runs the 256-sample rows alone and
compares them with limner's sampling.

    .venv/bin/python benchmarks/protocol.py [--crops 4] [--limit N] [--variants-only]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from compare import BASELINE, PHOTOS, Case, Counter, lime_method, load_photo, protocol
from estimators import Estimator, Target, kernelshap_variant, limner_fixed, polyshap_triangles
from stats import paired

import limner
from limner.explain.perturb import Perturber
from limner.explain.segmentation import RegionMap, region_map

#: Larger bundled images whose corners give distinct 224×224 crops.
LARGE = ["astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
         "camera", "china"]  # fmt: skip
SEEDS = (0, 1, 2)
LIMNER_256 = "kernelshap-256 (limner's sampling)"
POLY_256 = "kernelshap-256 + adjacent triangles (PolySHAP-style)"
REFERENCES = ("default (adaptive kernelshap)", "lime_image-1000")


def crops(name: str, count: int) -> list[np.ndarray]:
    """Up to ``count`` corner crops (224×224) of a bundled image."""
    if name == "china":
        from sklearn.datasets import load_sample_image

        img = load_sample_image("china.jpg")
    else:
        from skimage import data

        img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    img = np.ascontiguousarray(img[..., :3])
    h, w = img.shape[:2]
    corners = [(0, 0), (0, w - 224), (h - 224, 0), (h - 224, w - 224)]
    return [np.ascontiguousarray(img[y : y + 224, x : x + 224]) for y, x in corners[:count]]


def images(count: int) -> list[tuple[str, np.ndarray]]:
    """The 7 photos and ``count`` crops of each large image."""
    out = [(name, load_photo(name)) for name in PHOTOS]
    for name in LARGE:
        out += [(f"{name}#{i}", im) for i, im in enumerate(crops(name, count))]
    return out


def main() -> None:
    """Run the protocol at both region maps and print the tables."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (a smoke run)")
    ap.add_argument("--maps", default="slic,grid", help="which region maps: slic, grid or both")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--no-variants", action="store_true", help="skip the KernelSHAP-256 rows")
    which.add_argument(
        "--variants-only",
        action="store_true",
        help="only the KernelSHAP-256 rows (no default, no lime_image; differences are then "
        "against limner's sampling)",
    )
    args = ap.parse_args()
    model = limner.load_model("efficientnet-lite0", device="cpu")
    pictures = images(args.crops)
    if args.limit:
        pictures = pictures[: args.limit]
    lime = lime_method(64)

    def default(case: Case, f: Counter, seed: int, regions: RegionMap) -> np.ndarray:
        exp = limner.explain(case.image, f.model, predict=f.tensor, classes=[case.target],
                             baseline=BASELINE, seed=seed, regions=regions)  # fmt: skip
        return exp.classes[0].weights

    #: each variant is made for an image's region labels (the triangles need them)
    fixed: dict[str, Callable[[np.ndarray, bool], Estimator]] = {
        LIMNER_256: lambda labels, grid: limner_fixed("kernelshap", 256),
        "kernelshap-256, sizes uniform (Leverage SHAP's)": lambda labels, grid: kernelshap_variant(
            256, power=0.0
        ),
        POLY_256: lambda labels, grid: polyshap_triangles(256, labels, diagonal=grid),
    }
    if args.no_variants:
        fixed = {}
    maps = [m for m in (("slic", 24), ("grid", 49)) if m[0] in args.maps.split(",")]
    for seg, segments in maps:
        names = [] if args.variants_only else ["default (adaptive kernelshap)", "lime_image-1000"]
        names += list(fixed)
        aucs = {n: np.zeros((len(pictures), len(SEEDS), 2)) for n in names}
        seconds: dict[str, list[float]] = {n: [] for n in names if n in REFERENCES}
        for i, (name, img) in enumerate(pictures):
            regions = region_map(img, seg, segments)
            labels = regions.at_size(224, 224)
            base = Perturber(img, labels, BASELINE).base
            target = int(model.predict(img[None])[0].argmax())
            case = Case(name, img, labels, base, target)
            made = {n: make(labels, seg == "grid") for n, make in fixed.items()}
            for s, seed in enumerate(SEEDS):
                for n in names:
                    t = time.perf_counter()
                    if n.startswith("default"):
                        w = default(case, Counter(model), seed, regions)
                    elif n == "lime_image-1000":
                        w = lime(case, Counter(model), seed)
                    else:
                        w = made[n](Target(model, case), np.random.default_rng(seed))
                    if n in seconds:
                        seconds[n].append(time.perf_counter() - t)
                    aucs[n][i, s] = protocol(case, w, model)
            print(f"{seg} {i + 1}/{len(pictures)} {name}", file=sys.stderr, flush=True)
        render(seg, segments, len(pictures), aucs, seconds)


def render(
    seg: str,
    segments: int,
    n: int,
    aucs: dict[str, np.ndarray],
    seconds: dict[str, list[float]],
) -> None:
    """One table: mean AUCs and paired differences against lime_image-1000 (against limner's
    KernelSHAP-256 with ``--variants-only``), then each other 256-sample variant against
    limner's sampling."""
    rng = np.random.default_rng(0)
    bar = "lime_image-1000" if "lime_image-1000" in aucs else LIMNER_256
    ref = aucs[bar].mean(axis=1)  # (images, 2): mean over seeds
    print(f"\n{seg} ({segments} regions), {n} images × {len(SEEDS)} seeds\n")
    print(f"| method | deletion AUC | insertion AUC | deletion − {bar} [95%] "
          f"| insertion − {bar} [95%] | s per explanation |")  # fmt: skip
    print("| --- | ---: | ---: | --- | --- | ---: |")
    for name, values in aucs.items():
        mean = values.mean(axis=1)
        d, i = mean[:, 0], mean[:, 1]
        sec = f"{statistics.median(seconds[name]):.2f}" if name in seconds else "–"
        if name == bar:
            vs_d = vs_i = "–"
        else:
            vs_d, vs_i = paired(d - ref[:, 0], rng, "+.4f"), paired(i - ref[:, 1], rng, "+.4f")
        print(f"| {name} | {d.mean():.4f} | {i.mean():.4f} | {vs_d} | {vs_i} | {sec} |")
    if bar == LIMNER_256 or LIMNER_256 not in aucs:
        return
    a = aucs[LIMNER_256].mean(axis=1)
    for other in [k for k in aucs if k.startswith("kernelshap-256") and k != LIMNER_256]:
        b = aucs[other].mean(axis=1)
        deletion = paired(b[:, 0] - a[:, 0], rng, "+.4f")
        insertion = paired(b[:, 1] - a[:, 1], rng, "+.4f")
        print(f"\n{other} − limner's sampling: deletion {deletion}, insertion {insertion}")


if __name__ == "__main__":
    main()
