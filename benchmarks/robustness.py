"""Regions under noise: the default explanation's MaxSensitivity, with and without smoothing the
image before SLIC, and what the smoothing does to faithfulness.

Quantus's MaxSensitivity (one noise draw at its default level: uniform noise of ±0.2 in the
built-in model's normalised input, about ±26 of 255) measures how much an explanation's
attribution map moves when the image barely changes: ‖a − a′‖ / ‖a‖. The default explains the
image and its noisy copy with SLIC regions of each; when the regions move with the noise, the
map moves with them. Side by side in one run, on the bundled photos and distinct 224×224 crops
of them (efficientnet-lite0, 24 SLIC regions, the default method and baseline):

- MaxSensitivity of each setting on the same noise draws, per image, and the paired ratio;
- how far the same noise moves the map when the regions are held at the clean image's (the
  model's own response to the noise, which no segmentation can remove);
- the deletion and insertion AUCs of each setting's RESULT over several seeds, with paired
  bootstrap 95% intervals of the differences.

    .venv/bin/python benchmarks/robustness.py [--seeds 3] [--draws 2] [--limit N]
"""

from __future__ import annotations

import argparse
import importlib
import platform
import time

import numpy as np
from stats import paired

import limner
from limner.imaging import resize
from limner.samples import SAMPLE_PHOTOS, sample_photo

SIDE = 224
#: Quantus's default MaxSensitivity noise, ±0.2 of the built-in model's (pixel − 127) / 128.
NOISE = 0.2 * 128
SETTINGS = {"unsmoothed": 0.0, "smoothed": 1 / 75}
segmentation = importlib.import_module("limner.explain.segmentation")


def images() -> dict[str, np.ndarray]:
    """Each bundled photo at 224×224, and its four corner crops of 224×224 at full size."""
    out: dict[str, np.ndarray] = {}
    for name in SAMPLE_PHOTOS:
        photo = sample_photo(name)
        out[name] = resize(photo, SIDE, SIDE)
        h, w = photo.shape[:2]
        for tag, (y, x) in {
            "tl": (0, 0), "tr": (0, w - SIDE), "bl": (h - SIDE, 0), "br": (h - SIDE, w - SIDE)
        }.items():  # fmt: skip
            out[f"{name}-{tag}"] = np.ascontiguousarray(photo[y : y + SIDE, x : x + SIDE])
    return out


def max_sensitivity(draws: int, cases: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Quantus MaxSensitivity (nr_samples=1) per image and draw, for each setting."""
    import quantus
    import torch

    import limner.quantus
    from limner.models import builtin_torch_module

    net = builtin_torch_module()
    x = net.preprocess(np.stack(list(cases.values())))
    with torch.no_grad():
        y = net.module(torch.from_numpy(x)).argmax(1).numpy()
    scores: dict[str, np.ndarray] = {}
    for setting, share in SETTINGS.items():
        segmentation.SLIC_SMOOTHING = share
        per_draw = []
        for draw in range(draws):
            np.random.seed(draw)  # the same noise for both settings
            metric = quantus.MaxSensitivity(nr_samples=1, disable_warnings=True)
            per_draw.append(
                metric(model=net.module, x_batch=x, y_batch=y,
                       explain_func=limner.quantus.explain_func, explain_func_kwargs={"seed": 0})
            )  # fmt: skip
            print(f"  MaxSensitivity {setting} draw {draw}: mean {np.mean(per_draw[-1]):.3f}")
        scores[setting] = np.asarray(per_draw, np.float64).T  # (images, draws)
    return scores


def fixed_regions(model: limner.Model, cases: dict[str, np.ndarray], draws: int) -> np.ndarray:
    """‖a − a′‖/‖a‖ with a′ explained on the clean image's regions (same noise as Quantus)."""
    out = np.zeros((len(cases), draws))
    for i, img in enumerate(cases.values()):
        clean = limner.explain(img, model, seed=0)
        c = clean.classes[0].class_index
        a = clean.attribution_map(SIDE, SIDE, class_index=c)
        for draw in range(draws):
            noise = np.random.default_rng(draw).uniform(-NOISE, NOISE, img.shape)
            noisy = np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)
            other = limner.explain(noisy, model, seed=0, classes=[c], regions=clean.regions)
            b = other.attribution_map(SIDE, SIDE, class_index=c)
            out[i, draw] = np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12)
    return out


def faithfulness(model: limner.Model, cases: dict[str, np.ndarray], seeds: int) -> dict:
    """Deletion/insertion AUC and seconds of each setting, per (image, seed), same class."""
    out = {s: {"deletion": [], "insertion": [], "seconds": []} for s in SETTINGS}
    for img in cases.values():
        cls = int(np.argmax(model.predict(resize(img, SIDE, SIDE)[None])[0]))
        for seed in range(seeds):
            for setting, share in SETTINGS.items():
                segmentation.SLIC_SMOOTHING = share
                t = time.perf_counter()
                exp = limner.explain(img, model, seed=seed, classes=[cls])
                c = exp.to_dict()["explanations"][0]
                out[setting]["seconds"].append(time.perf_counter() - t)
                out[setting]["deletion"].append(c["deletion_auc"])
                out[setting]["insertion"].append(c["insertion_auc"])
    return {s: {k: np.asarray(v) for k, v in d.items()} for s, d in out.items()}


def main() -> None:
    """Run both settings side by side and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of each explanation")
    parser.add_argument("--draws", type=int, default=2, help="MaxSensitivity noise draws")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = images()
    if args.limit:
        cases = dict(list(cases.items())[: args.limit])
    photos = [i for i, name in enumerate(cases) if "-" not in name]
    model = limner.load_model("efficientnet-lite0")
    print(f"{len(cases)} images ({len(photos)} photos, the rest crops), {platform.processor()}")

    sens = max_sensitivity(args.draws, cases)
    floor = fixed_regions(model, cases, args.draws)
    print(f"  regions held fixed: mean {floor.mean():.3f}")
    faith = faithfulness(model, cases, args.seeds)
    segmentation.SLIC_SMOOTHING = SETTINGS["smoothed"]

    print("\n| images | unsmoothed | smoothed | smoothed / unsmoothed [95%] | regions held fixed |")
    print("| --- | --- | --- | --- | --- |")
    for label, rows in (("bundled photos", photos), ("all", list(range(len(cases))))):
        u, s = sens["unsmoothed"][rows], sens["smoothed"][rows]
        boot = []
        for _ in range(4000):
            pick = rng.integers(0, len(rows), len(rows))
            boot.append(s[pick].mean() / u[pick].mean())
        lo, hi = np.quantile(boot, [0.025, 0.975])
        print(
            f"| {label} ({len(rows)}) | {u.mean():.3f} | {s.mean():.3f} | "
            f"{s.mean() / u.mean():.2f} [{lo:.2f}, {hi:.2f}] | {floor[rows].mean():.3f} |"
        )
    print("\nper photo (mean over draws): " + ", ".join(
        f"{name} {sens['unsmoothed'][i].mean():.2f}→{sens['smoothed'][i].mean():.2f}"
        f" (fixed {floor[i].mean():.2f})"
        for i, name in enumerate(cases) if i in photos
    ))  # fmt: skip

    print("\n| setting | deletion AUC | insertion AUC | seconds, median |")
    print("| --- | --- | --- | --- |")
    for setting, d in faith.items():
        print(
            f"| {setting} | {d['deletion'].mean():.3f} | {d['insertion'].mean():.3f} | "
            f"{np.median(d['seconds']):.2f} |"
        )

    def per_image(setting: str, key: str) -> np.ndarray:
        return faith[setting][key].reshape(len(cases), args.seeds).mean(axis=1)

    dele = per_image("smoothed", "deletion") - per_image("unsmoothed", "deletion")
    ins = per_image("smoothed", "insertion") - per_image("unsmoothed", "insertion")
    print(
        f"\nsmoothed − unsmoothed, {len(cases)} images (each the mean of {args.seeds} seeds), "
        f"paired bootstrap 95% over images: deletion {paired(dele, rng)}, "
        f"insertion {paired(ins, rng)}"
    )


if __name__ == "__main__":
    main()
