"""One benchmark: limner against lime, captum and shap on the same model, photos and regions.

Every method explains the same 224×224 photos with the same efficientnet-lite0 (ONNX Runtime on
the CPU), the same SLIC regions and the same baseline (each region's mean colour). For each it
measures wall seconds per explanation, model evaluations, the deletion and insertion AUC of
its region ranking under one protocol (limner's curves at every step, same baseline; averaged
over both seeds), and seed stability (Spearman rank correlation of the region weights from seeds
0 and 1). For limner's adaptive default it also lists the samples used per photo and the share
of explanations whose top regions settled.

    .venv/bin/python benchmarks/compare.py [--photos 7] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import limner
from limner.explain.metrics import auc, curve_masks, ranking
from limner.explain.perturb import Perturber
from limner.explain.segmentation import region_map
from limner.imaging import resize
from limner.samples import sample_photo

SEGMENTS = 24
BASELINE = "mean"
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket", "camera", "china", "flower"]


def load_photo(name: str) -> np.ndarray:
    """A scikit-image or scikit-learn bundled photo, at 224×224."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        img = sample_photo(name)
    return resize(np.ascontiguousarray(img), 224, 224)


class Counter:
    """Wraps the model: counts evaluations and the seconds spent in the model.

    Called with images (what lime, captum and shap pass) it preprocesses them inside the timed
    part; ``tensor`` is what limner's engine calls with inputs it already prepared.
    """

    def __init__(self, model: limner.Model) -> None:
        self.model = model
        self.evals = 0
        self.seconds = 0.0
        #: what limner's RESULT said: samples used and whether the top regions settled
        self.samples: int | None = None
        self.settled: bool | None = None

    def tensor(self, x: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = self.model.predict_tensor(x)
        self.seconds += time.perf_counter() - t
        self.evals += len(x)
        return out

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images)
        if x.dtype != np.uint8:
            x = np.clip(np.round(x), 0, 255).astype(np.uint8)
        t = time.perf_counter()
        out = self.model.predict(x)
        self.seconds += time.perf_counter() - t
        self.evals += len(x)
        return out


@dataclass
class Case:
    """One photo prepared for every method."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    baseline: np.ndarray
    target: int


Method = Callable[[Case, Counter, int], np.ndarray]


def _limner(case: Case, f: Counter, seed: int, **settings: object) -> limner.Explanation:
    """One limner explanation of the case's target through the counting model."""
    return limner.explain(
        case.image,
        f.model,
        predict=f.tensor,
        classes=[case.target],
        segments=SEGMENTS,
        baseline=BASELINE,
        seed=seed,
        **settings,  # type: ignore[arg-type]
    )


def limner_method(**settings) -> Method:
    def run(case: Case, f: Counter, seed: int) -> np.ndarray:
        exp = _limner(case, f, seed, segmentation="slic", **settings)
        f.samples, f.settled = exp.samples, exp.classes[0].settled
        return exp.classes[0].weights

    return run


#: XRAI's deletion and insertion AUC on its own regions (the RESULT's), per explanation.
XRAI_OWN: list[tuple[float, float]] = []


def xrai_method(**settings) -> Method:
    """limner's XRAI read on the protocol's regions: its map (each pixel, the gain density of
    its XRAI region) summed over each SLIC region. The RESULT's own AUCs, on XRAI's regions,
    are kept in ``XRAI_OWN``."""

    def run(case: Case, f: Counter, seed: int) -> np.ndarray:
        exp = _limner(case, f, seed, method="xrai", **settings)
        own = exp.classes[0].faithfulness
        XRAI_OWN.append((own.deletion_auc, own.insertion_auc))
        sal = exp.saliency[case.target]  # at the model's size, the photo's size here
        m = int(case.labels.max()) + 1
        return np.bincount(case.labels.ravel(), weights=sal.ravel(), minlength=m)

    return run


def lime_method(batch_size: int) -> Method:
    def run(case: Case, f: Counter, seed: int) -> np.ndarray:
        from lime import lime_image

        explainer = lime_image.LimeImageExplainer(random_state=seed)
        exp = explainer.explain_instance(
            case.image,
            f,
            labels=(case.target,),
            top_labels=None,
            hide_color=None,
            num_samples=1000,
            batch_size=batch_size,
            segmentation_fn=lambda _: case.labels,
            random_seed=seed,
        )
        w = np.zeros(case.labels.max() + 1)
        for i, v in exp.local_exp[case.target]:
            w[i] = v
        return w

    return run


def captum_method(kind: str) -> Method:
    def run(case: Case, f: Counter, seed: int) -> np.ndarray:
        import torch
        from captum.attr import KernelShap, Lime

        torch.manual_seed(seed)

        def forward(x: torch.Tensor) -> torch.Tensor:
            imgs = x.permute(0, 2, 3, 1).numpy()
            return torch.from_numpy(f(imgs))

        algo = (KernelShap if kind == "kernelshap" else Lime)(forward)
        inp = torch.from_numpy(case.image.astype(np.float32)).permute(2, 0, 1)[None]
        base = torch.from_numpy(case.baseline.astype(np.float32)).permute(2, 0, 1)[None]
        mask = torch.from_numpy(case.labels.astype(np.int64))[None, None].expand(1, 3, 224, 224)
        attr = algo.attribute(
            inp,
            baselines=base,
            target=case.target,
            feature_mask=mask,
            n_samples=1000,
            perturbations_per_eval=64,
        )
        a = attr[0, 0].numpy()
        m = case.labels.max() + 1
        return np.bincount(case.labels.ravel(), a.ravel(), m) / np.maximum(
            np.bincount(case.labels.ravel(), minlength=m), 1
        )

    return run


def shap_method() -> Method:
    def run(case: Case, f: Counter, seed: int) -> np.ndarray:
        import shap

        masker = shap.maskers.Image(case.baseline.astype(np.float64), case.image.shape)
        explainer = shap.Explainer(lambda x: f(x), masker, algorithm="partition", seed=seed)
        sv = explainer(
            case.image[None].astype(np.float64),
            max_evals=1000,
            batch_size=64,
            outputs=[case.target],
            silent=True,
        )
        vals = np.asarray(sv.values)[0, ..., 0].sum(axis=2)
        return np.bincount(case.labels.ravel(), vals.ravel(), case.labels.max() + 1)

    return run


@dataclass
class Row:
    name: str
    seconds: list[float] = field(default_factory=list)
    evals: list[int] = field(default_factory=list)
    model_share: list[float] = field(default_factory=list)
    deletion: list[float] = field(default_factory=list)
    insertion: list[float] = field(default_factory=list)
    stability: list[float] = field(default_factory=list)
    samples: dict[str, list[int]] = field(default_factory=dict)
    settled: list[bool] = field(default_factory=list)


def protocol(case: Case, weights: np.ndarray, model: limner.Model) -> tuple[float, float]:
    """Deletion and insertion AUC of a region ranking, the same protocol for every method."""
    order = ranking(weights)
    dele, ins = curve_masks(order)
    pert = Perturber(case.image, case.labels, BASELINE, int(case.labels.max()) + 1)
    probs = np.concatenate(
        [
            model.predict(pert.regions(z[i : i + 32]))
            for z in (dele, ins)
            for i in range(0, len(z), 32)
        ]
    )
    m1 = len(order) + 1
    return auc(probs[:m1, case.target]), auc(probs[m1:, case.target])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    parser.add_argument("--only", default="", help="comma-separated method names to run")
    parser.add_argument("--out", default="", help="write the markdown table to this file too")
    args = parser.parse_args()
    model = limner.load_model("efficientnet-lite0", device="cpu")
    methods: dict[str, Method] = {
        "limner kernelshap adaptive (default)": limner_method(method="kernelshap"),
        "limner kernelshap adaptive, ties δ=0.2": limner_method(
            method="kernelshap", tie_tolerance=0.2
        ),
        "limner kernelshap-256 (fixed)": limner_method(method="kernelshap", samples=256),
        "limner kernelshap-160": limner_method(method="kernelshap", samples=160),
        "limner kernelshap-384": limner_method(method="kernelshap", samples=384),
        "limner lime-1000": limner_method(method="lime", samples=1000),
        "limner occlusion": limner_method(method="occlusion"),
        "limner integrated-gradients --steps 32": limner_method(
            method="integrated-gradients", steps=32
        ),
        "limner xrai --steps 32": xrai_method(steps=32),
        "lime_image-1000 bs64": lime_method(64),
        "lime_image-1000 bs10": lime_method(10),
        "captum KernelShap-1000": captum_method("kernelshap"),
        "captum Lime-1000": captum_method("lime"),
        "shap Partition-1000": shap_method(),
    }
    if args.only:
        keep = [s.strip() for s in args.only.split(",")]
        methods = {k: v for k, v in methods.items() if any(s in k for s in keep)}
    cases = []
    for name in PHOTOS[: args.photos]:
        img = load_photo(name)
        labels = region_map(img, "slic", SEGMENTS).labels
        base = Perturber(img, labels, BASELINE).base
        target = int(model.predict(img[None])[0].argmax())
        cases.append(Case(name, img, labels, base, target))
    # methods interleaved per photo and seed, so a change in the machine's load during the run
    # falls on every method alike and the time ratios stay comparable
    rows = {mname: Row(mname) for mname in methods}
    for case in cases:
        weights: dict[str, list[np.ndarray]] = {mname: [] for mname in methods}
        for seed in (0, 1):
            for mname, method in methods.items():
                row = rows[mname]
                f = Counter(model)
                t = time.perf_counter()
                w = method(case, f, seed)
                wall = time.perf_counter() - t
                weights[mname].append(w)
                row.seconds.append(wall)
                row.evals.append(f.evals)
                row.model_share.append(wall / max(f.seconds, 1e-9))
                if f.samples is not None:
                    row.samples.setdefault(case.name, []).append(f.samples)
                if f.settled is not None:
                    row.settled.append(f.settled)
                d, i = protocol(case, w, model)
                row.deletion.append(d)
                row.insertion.append(i)
                print(
                    f"{case.name} seed {seed} {mname}: {wall:.2f}s {f.evals} evals"
                    f" del={d:.4f} ins={i:.4f}",
                    flush=True,
                )
        for mname in methods:
            rows[mname].stability.append(spearman(*weights[mname]))
    table = render(list(rows.values()), cases)
    if XRAI_OWN:
        d, i = np.mean(XRAI_OWN, axis=0)
        table += (
            f"\n\nlimner xrai on its own regions (the RESULT's curves, at most {SEGMENTS} "
            f"regions): deletion AUC {d:.4f}, insertion AUC {i:.4f}."
        )
    print(table)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(table + "\n")


def render(rows: list[Row], cases: list[Case]) -> str:
    ref = next((r for r in rows if r.name.startswith("lime_image-1000 bs64")), rows[0])
    ref_s = statistics.mean(ref.seconds)
    ref_e = statistics.mean(ref.evals)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores; photos: {', '.join(c.name for c in cases)}; "
        f"SLIC {SEGMENTS} regions at 224×224, baseline = region mean colour.",
        "",
        "| method | s / explanation | model evals | wall ÷ model time | deletion AUC ↓ | "
        "insertion AUC ↑ | seed stability (Spearman) | time vs lime_image-1000 bs64 | "
        "model evals vs lime_image-1000 bs64 | settled |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = statistics.mean(r.seconds)
        lines.append(
            f"| {r.name} | {s:.2f} | {statistics.mean(r.evals):.0f} | "
            f"{statistics.mean(r.model_share):.2f} | {statistics.mean(r.deletion):.4f} | "
            f"{statistics.mean(r.insertion):.4f} | {statistics.mean(r.stability):.3f} | "
            f"{s / ref_s:.2f}× | {statistics.mean(r.evals) / ref_e:.2f}× | "
            + (f"{100 * statistics.mean(r.settled):.0f}% |" if r.settled else "– |")
        )
    for r in rows:
        if r.samples:
            per = ", ".join(f"{k} {statistics.mean(v):.0f}" for k, v in r.samples.items())
            lines.append(f"\nSamples used by {r.name} (mean over seeds): {per}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
