"""Which region ranking can a small budget buy? Estimators at 96 to 4096 model evaluations on
the compare.py protocol, faithfulness only (no timing).

The protocol's speed bar (the default at 0.10× lime_image-1000's time) leaves the default
about 160 model evaluations per explanation on a 2-core machine, its own deletion and insertion
curves (about 20) included: about 140 samples. This script asks what rankings cost at such
budgets: each estimator gets the same photos, regions, baseline and seeds as compare.py, and its
ranking is replayed by the same deletion/insertion protocol. Variants:

- ``kernelshap-N``: limner's KernelSHAP design and estimate at a fixed N (paired sampling,
  sizes 1 and M−1 enumerated, the efficiency constraint); at N = 4096 its weights, averaged
  over the two seeds, stand in for the exact Shapley values (2^M is out of reach for M ≈ 24),
  and every KernelSHAP row also reports its error against them: Σ(φ̂ − φ)² / Σφ², mean over
  photos and seeds;
- ``kernelshap-N, regression-adjusted``: the same samples; a surrogate
  g(z) = sigmoid(a + b·z) is fitted to the class probability's logit, its Shapley values are
  computed by 20 000 antithetic permutations (the surrogate costs no model evaluations), and
  KernelSHAP estimates only the residual f − g (Witter et al., 2025, regression-adjusted
  Monte Carlo);
- ``half-on OLS-N``: LIME's sampling (each region on with probability ½, paired) and ordinary
  least squares, no kernel;
- ``limner lime-N``; lime_image-1000 (batch 64) with seeds 0 and 1, the bar; and lime_image
  again with seeds 2 and 3, which shows how far the bar itself moves with its seeds.

    .venv/bin/python benchmarks/estimators.py [--photos 7]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
from compare import BASELINE, PHOTOS, SEGMENTS, Case, Counter, lime_method, load_photo, protocol

import limner
from limner.explain.methods import kernelshap, make_explainer
from limner.explain.methods.kernelshap import KernelShapExplainer
from limner.explain.perturb import Perturber
from limner.explain.segmentation import region_map


class Target:
    """The model's probability of the explained class for region masks; counts evaluations."""

    def __init__(self, model: limner.Model, case: Case) -> None:
        self.count = int(case.labels.max()) + 1
        self._model, self._class = model, case.target
        self._pert = Perturber(
            case.image, case.labels, BASELINE, self.count, prepare=model.preprocess
        )
        self.evals = 0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """The probabilities for the masks ``z``; a mask repeated in ``z`` is scored (and
        counted) once, as limner's engine does."""
        z = np.asarray(z, np.float32)
        distinct, back = np.unique(z, axis=0, return_inverse=True)
        self.evals += len(distinct)
        out = [
            self._model.predict_tensor(self._pert.regions(distinct[i : i + 32]))[:, self._class]
            for i in range(0, len(distinct), 32)
        ]
        return np.concatenate(out).astype(np.float64)[back.ravel()]


Estimator = Callable[[Target, np.random.Generator], np.ndarray]


def limner_fixed(method: str, n: int) -> Estimator:
    def run(f: Target, rng: np.random.Generator) -> np.ndarray:
        ex = make_explainer(method, samples=n, seed=int(rng.integers(1 << 30)))
        design = ex.design(f, rng)  # type: ignore[arg-type]  # needs only .count
        return ex.estimate(design, f(design.z)).weights

    return run


def kernelshap_variant(
    n: int, *, power: float = 1.0, balanced: bool = False, ends: bool = True
) -> Estimator:
    """KernelSHAP's estimate on a changed design: sampled sizes drawn with probability
    proportional to (kernel mass)^``power`` (1: limner's; 0: uniform over sizes, as leverage-score
    sampling has it); ``balanced``: the coalitions of one size cut from one random permutation,
    so every region appears equally often; ``ends=False``: sizes 1 and M−1 sampled, not
    enumerated. Importance weights follow the draw, so the estimate stays consistent."""

    def run(f: Target, rng: np.random.Generator) -> np.ndarray:
        ex = KernelShapExplainer(samples=n, seed=0)
        design = kernelshap._enumerate(f.count, n - 2 if ends else 0, 0)
        q = design.mass**power
        q = q / q.sum()
        pools: dict[int, list[np.ndarray]] = {}
        rows: list[np.ndarray] = []
        strata: list[int] = []
        while len(design.z) + len(rows) < n - 1:  # pairs until about n rows in all
            j = int(rng.choice(len(q), p=q))
            k = int(design.strata[j])
            if balanced:
                if not pools.get(j):
                    perm = rng.permutation(f.count)
                    pools[j] = [perm[i : i + k] for i in range(0, f.count - k + 1, k)]
                members = pools[j].pop()
            else:
                members = rng.permutation(f.count)[:k]
            row = np.zeros(f.count, np.float32)
            row[members] = 1.0
            rows.extend([row, 1.0 - row])
            strata.append(j)
        design.z = np.vstack([design.z, np.asarray(rows, np.float32)])
        design.draw_stratum = np.asarray(strata, np.int64)
        design.draw_q = q[design.draw_stratum]
        return ex.estimate(design, f(design.z)).weights

    return run


def half_on_ols(n: int) -> Estimator:
    def run(f: Target, rng: np.random.Generator) -> np.ndarray:
        z = (rng.random((n // 2, f.count)) < 0.5).astype(np.float64)
        z = np.concatenate([z, 1.0 - z])
        x = np.hstack([np.ones((len(z), 1)), z])
        return np.linalg.lstsq(x, f(z), rcond=None)[0][1:]

    return run


def adjacent_triangles(labels: np.ndarray, diagonal: bool) -> list[tuple[int, int, int]]:
    """Triples of regions that touch each other pairwise in ``labels`` (4-neighbourhood, and
    the diagonals when ``diagonal``, which a grid needs: its 4-neighbourhood has no triangles)."""
    lab = np.asarray(labels)
    pairs: set[tuple[int, int]] = set()
    shifts = [(lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])]
    if diagonal:
        shifts += [(lab[:-1, :-1], lab[1:, 1:]), (lab[:-1, 1:], lab[1:, :-1])]
    for a, b in shifts:
        edge = a != b
        for u, v in zip(a[edge].ravel(), b[edge].ravel(), strict=True):
            pairs.add((int(min(u, v)), int(max(u, v))))
    near: dict[int, set[int]] = {}
    for u, v in pairs:
        near.setdefault(u, set()).add(v)
        near.setdefault(v, set()).add(u)
    return sorted((u, v, w) for u, v in pairs for w in near[u] & near[v] if w > v)


def polyshap_triangles(n: int, labels: np.ndarray, *, diagonal: bool = False) -> Estimator:
    """limner's KernelSHAP design at ``n`` (the same draws as :func:`limner_fixed` with the same
    generator), fitted with a third-order term per triangle of adjacent regions besides the
    linear ones (PolySHAP, interaction-informed polynomial regression): the kernel-weighted fit
    under efficiency (all coefficients add up to f(all) − f(none)), then each region's value is
    its own coefficient plus a third of each of its triangles' (their Shapley values)."""
    triangles = adjacent_triangles(labels, diagonal)

    def run(f: Target, rng: np.random.Generator) -> np.ndarray:
        ex = make_explainer("kernelshap", samples=n, seed=int(rng.integers(1 << 30)))
        design = ex.design(f, rng)  # type: ignore[arg-type]  # needs only .count
        y = f(design.z)
        assert isinstance(design, kernelshap._ShapDesign) and not design.exact
        z = design.z[2:].astype(np.float64)
        m = z.shape[1]
        cube = (
            np.stack([z[:, list(t)].prod(axis=1) for t in triangles], axis=1)
            if triangles
            else np.zeros((len(z), 0))
        )
        feats = np.hstack([cube, z])  # the last column is the eliminated one
        total = float(y[1] - y[0])
        x = feats[:, :-1] - z[:, -1:]
        t = (y[2:] - y[0]) - z[:, -1] * total
        w = design.row_weights()
        a = (x * w[:, None]).T @ x
        head = np.linalg.lstsq(a, x.T @ (w * t), rcond=None)[0]
        coef = np.append(head, total - head.sum())
        k = len(triangles)
        phi = coef[k:].copy()
        for j, tri in enumerate(triangles):
            phi[list(tri)] += coef[j] / 3.0
        assert len(phi) == m
        return phi

    return run


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-t))


def logistic_shapley(a: float, b: np.ndarray, perms: int = 10_000) -> np.ndarray:
    """Shapley values of sigmoid(a + b·z), by antithetic permutations (they add up exactly)."""
    rng = np.random.default_rng(0)
    order = np.argsort(rng.random((perms, len(b))), axis=1)
    order = np.concatenate([order, order[:, ::-1]])
    path = a + np.concatenate([np.zeros((len(order), 1)), np.cumsum(b[order], axis=1)], axis=1)
    steps = np.diff(_sigmoid(path), axis=1)
    phi = np.zeros(len(b))
    np.add.at(phi, order.ravel(), steps.ravel())
    return phi / len(order)


def regression_adjusted(n: int) -> Estimator:
    def run(f: Target, rng: np.random.Generator) -> np.ndarray:
        ex = KernelShapExplainer(samples=n, seed=0)
        design = ex.design(f, rng)  # type: ignore[arg-type]
        z = design.z.astype(np.float64)
        y = f(design.z)
        p = np.clip(y, 1e-4, 1 - 1e-4)
        x = np.hstack([np.ones((len(z), 1)), z])
        coef = np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1]), x.T @ np.log(p / (1 - p)))
        g = _sigmoid(x @ coef)
        return logistic_shapley(float(coef[0]), coef[1:]) + ex.estimate(design, y - g).weights

    return run


#: The estimator whose weights, averaged over the two seeds, stand in for the exact Shapley values.
TRUTH = "kernelshap-4096"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    args = parser.parse_args()
    model = limner.load_model("efficientnet-lite0", device="cpu")
    estimators: dict[str, Estimator] = {}
    for n in (96, 128, 140, 160, 256, 512, 4096):
        estimators[f"kernelshap-{n}"] = limner_fixed("kernelshap", n)
    for n in (96, 128, 256):
        estimators[f"kernelshap-{n}, regression-adjusted"] = regression_adjusted(n)
    estimators["kernelshap-140, balanced draws"] = kernelshap_variant(140, balanced=True)
    estimators["kernelshap-140, sizes ∝ √kernel mass"] = kernelshap_variant(140, power=0.5)
    estimators["kernelshap-140, sizes uniform"] = kernelshap_variant(140, power=0.0)
    estimators["kernelshap-140, sizes 1 and M−1 sampled"] = kernelshap_variant(140, ends=False)
    estimators["half-on OLS-160"] = half_on_ols(160)
    estimators["limner lime-160"] = limner_fixed("lime", 160)
    estimators["limner lime-1000"] = limner_fixed("lime", 1000)
    noise = "lime_image-1000 bs64, seeds 2 and 3 (the bar's own seed noise)"
    # per row: deletion AUC, insertion AUC, evaluations, error against the near-exact values
    rows: dict[str, list[tuple[float, float, int, float]]] = {
        k: [] for k in [*estimators, "lime_image", noise]
    }
    for name in PHOTOS[: args.photos]:
        img = load_photo(name)
        labels = region_map(img, "slic", SEGMENTS).labels
        base = Perturber(img, labels, BASELINE).base
        case = Case(name, img, labels, base, int(model.predict(img[None])[0].argmax()))
        found: dict[str, list[tuple[np.ndarray, float, float, int]]] = {k: [] for k in rows}
        for seed in (0, 1):
            for key, estimate in estimators.items():
                f = Target(model, case)
                weights = estimate(f, np.random.default_rng(seed))
                found[key].append((weights, *protocol(case, weights, model), f.evals))
            for key, lime_seed in (("lime_image", seed), (noise, seed + 2)):
                counter = Counter(model)
                weights = lime_method(64)(case, counter, lime_seed)
                found[key].append((weights, *protocol(case, weights, model), counter.evals))
            print(f"{name} seed {seed} done", flush=True)
        truth = np.mean([w for w, *_ in found[TRUTH]], axis=0)
        for key, runs in found.items():
            for w, d, i, n in runs:
                rows[key].append((d, i, n, float(np.sum((w - truth) ** 2) / np.sum(truth**2))))
    ref_d = statistics.mean(r[0] for r in rows["lime_image"])
    ref_i = statistics.mean(r[1] for r in rows["lime_image"])
    print(
        "| estimator | model evaluations | deletion AUC ↓ | insertion AUC ↑ | Δ deletion | "
        "Δ insertion | error vs near-exact Shapley |"
    )
    print("|---|---|---|---|---|---|---|")
    for key, values in rows.items():
        d, i, evals, e = (statistics.mean(v[j] for v in values) for j in range(4))
        label = "lime_image-1000 bs64 (the bar)" if key == "lime_image" else key
        # only the KernelSHAP rows estimate Shapley values; the others estimate other weights
        err = "(the reference)" if key == TRUTH else f"{e:.3f}" if "kernelshap" in key else "–"
        print(
            f"| {label} | {evals:.0f} | {d:.4f} | {i:.4f} | {d - ref_d:+.4f} | {i - ref_i:+.4f} | "
            f"{err} |"
        )


if __name__ == "__main__":
    main()
