"""``explain()``: segment once, sample region masks, evaluate in batches, estimate, measure.

Pure computation: no database, no HTTP. The same inputs and seed give the same RESULT.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from limner.amortized.calibration import CHECK_PAIRS, check_coalitions
from limner.errors import InvalidInputError
from limner.explain.checks import class_warnings
from limner.explain.methods import (
    BLACK_BOX_METHODS,
    EXPLAINERS,
    GRADIENT_METHODS,
    METHODS,
    make_explainer,
)
from limner.explain.methods.amortized import amortized_estimates, learned_explainer
from limner.explain.methods.base import Design, Estimate, Explainer
from limner.explain.methods.gradients import (
    GradientAttributor,
    GradientMap,
    curve_r2,
    gradient_estimate,
    gradient_fields,
    require_forward,
)
from limner.explain.methods.xrai import XraiRegions, xrai_map, xrai_order, xrai_regions
from limner.explain.metrics import (
    Faithfulness,
    RandomOrders,
    curve_masks,
    curve_steps,
    faithfulness,
    flip_gaps,
    random_orders,
    random_reference,
    ranking,
)
from limner.explain.perturb import BASELINES, Perturber
from limner.explain.result import ClassExplanation, Explanation
from limner.explain.segmentation import (
    DEFAULT_SEGMENTS,
    SEGMENTATIONS,
    RegionMap,
    count_note,
    region_map,
)
from limner.explain.uncertainty import (
    DEFAULT_CONFIDENCE,
    DEFAULT_SETTLE_TOP,
    DEFAULT_TIE_TOLERANCE,
    intervals,
    quantile,
    ties,
    unsettled_contrasts,
)
from limner.imaging.decode import DEFAULT_MAX_PIXELS, ImageInput, decode_image
from limner.imaging.transform import resize
from limner.models.base import Model

if TYPE_CHECKING:
    from limner.amortized import AmortizedExplainer

DEFAULT_METHOD = "kernelshap"
DEFAULT_SEGMENTATION = "slic"
DEFAULT_BASELINE = "blur"
#: How many top predictions the RESULT lists at least.
MIN_PREDICTIONS = 5

Predict = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]
#: ``progress`` is called as (round(fraction × PROGRESS_SCALE), PROGRESS_SCALE).
PROGRESS_SCALE = 10_000


def explain(
    image: ImageInput,
    model: Model,
    *,
    method: str = DEFAULT_METHOD,
    samples: int | None = None,
    max_samples: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    settle_top: int = DEFAULT_SETTLE_TOP,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    segmentation: str = DEFAULT_SEGMENTATION,
    segments: int | None = None,
    baseline: str = DEFAULT_BASELINE,
    classes: Sequence[str | int] | None = None,
    top_k: int = 1,
    seed: int = 0,
    batch_size: int | None = None,
    predict: Predict | None = None,
    progress: Progress | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    steps: int | None = None,
    layer: str | None = None,
    regions: RegionMap | None = None,
    explainer: AmortizedExplainer | str | Path | None = None,
    curves: bool = True,
) -> Explanation:
    """Explain which regions of ``image`` pushed ``model``'s classes up or down.

    Args:
        image: a path, encoded bytes, a PIL image or an RGB uint8 array, of any size.
        model: a loaded classifier (``limner.load_model``).
        method: ``kernelshap`` (default), ``lime``, ``occlusion``, ``rise``, ``amortized`` (a
            trained explainer's forward pass, ``explainer``: docs/amortized.md), or for a model
            with a torch forward ``integrated-gradients``, ``gradcam`` or ``xrai`` (regions
            grown from Integrated Gradients by gain density, Kapishnikov et al. 2019; its
            regions replace ``segmentation``, and ``segments`` caps their number).
        samples: a fixed budget of model evaluations for the method's estimate (default: the
            method's own; for ``kernelshap``, adaptive rounds up to ``max_samples``).
        max_samples: budget of the adaptive default (default 256).
        confidence: confidence of each region's interval and of ``settled`` (default 0.9).
        settle_top: how many top regions (by absolute weight) must have a settled order and
            sign for the adaptive default to stop (default 3).
        tie_tolerance: δ, a share of the largest absolute weight: adjacent top regions whose
            absolute weights are, at ``confidence``, within δ of each other count as settled
            (tied) without an order (default 0: a strict order; 0.2 stops about twice as
            early on 24-region photos, at some cost in faithfulness).
        segmentation: ``slic`` (default), ``quickshift``, ``felzenszwalb`` or ``grid``.
        segments: number of regions (default 24; for ``grid``, rows × cols; for ``xrai``, the
            most regions: the rest is merged into one last region).
        baseline: what a switched-off region becomes: ``blur`` (default), ``mean``, ``gray``,
            ``black``.
        classes: labels or class indices to explain; default: the ``top_k`` most probable
            classes (both classes for a binary model).
        top_k: how many of the most probable classes to explain when ``classes`` is not given.
        seed: seed of the sampling; the same seed gives the same result.
        batch_size: images per model call (default: the model's preferred size).
        predict: replaces ``model.predict_tensor`` (a shared batcher, say): model-ready tensors
            (``model.preprocess`` of the perturbed images) in, probabilities out.
        progress: called as ``progress(done, total)`` after each batch; ``done / total`` only
            goes up.
        max_pixels: refuse larger images before decoding them.
        steps: integration steps of ``integrated-gradients`` and ``xrai`` (default: 64,
            doubled until the attributions are complete within 1%, at most 512).
        layer: the layer ``gradcam`` reads (default: the last spatial feature map).
        regions: a region map of this image to use instead of segmenting it (several
            explanations compared on the same regions share one); ``xrai`` then ranks these
            regions by gain density instead of growing its own.
        explainer: method ``amortized``'s trained explainer (a folder from ``limner explainer
            train``, or a loaded :class:`~limner.amortized.AmortizedExplainer`); its baseline
            replaces ``baseline``. An image its check finds outside what it learned is
            explained with the default method instead, with a warning.
        curves: compute the deletion and insertion curves (their AUCs, the random-order
            references, the sufficient and necessary regions). Without them (the region
            methods only) the RESULT's faithfulness fields are null and the explanation costs
            only its method's own evaluations: about 70 fewer at 24 regions, most of an
            amortized explanation. Ask again with curves to have them.

    Returns:
        An :class:`Explanation`; ``to_dict()`` gives the RESULT.
    """
    _validate(method, segmentation, baseline, samples, segments, top_k, batch_size)
    _validate_uncertainty(max_samples, confidence, settle_top, tie_tolerance)
    gradients = _gradients(method, model, steps, layer)
    if not curves and gradients is not None:
        raise InvalidInputError(
            f"{method} needs its curves (they measure its fit); curves=False applies to the "
            "region methods"
        )
    learned = learned_explainer(method, explainer, model)
    if learned is not None:
        baseline = learned.baseline  # the games it learned were played with it
    sampler = (
        None
        if gradients or learned
        else make_explainer(method, samples=samples, seed=seed, max_samples=max_samples)
    )
    start = time.perf_counter()
    rgb = decode_image(image, max_pixels=max_pixels)
    width, height = model.input_size
    maps: list[GradientMap] = []
    grown: XraiRegions | None = None
    chosen: list[int] = []
    if regions is not None and regions.original_size != (rgb.shape[1], rgb.shape[0]):
        raise InvalidInputError("the region map given is not of this image's size")
    if regions is None and gradients is not None and method == "xrai":
        # XRAI's regions come from the first explained class's attribution
        small = resize(rgb, width, height)
        full = np.asarray((predict or model.predict_tensor)(model.preprocess(small[None])))[0]
        chosen = _choose_classes(model, full, classes, top_k)
        maps = [gradients.attribute(small, small, c) for c in chosen]
        grown = xrai_regions(small, maps[0].pixels, segments or DEFAULT_SEGMENTS)
        regions = RegionMap(grown.labels, (rgb.shape[1], rgb.shape[0]), "xrai")
    elif regions is None:
        regions = region_map(rgb, segmentation, segments or DEFAULT_SEGMENTS)
    m = regions.count
    perturber = Perturber(
        resize(rgb, width, height),
        regions.at_size(width, height),
        baseline,
        m,
        prepare=model.preprocess,
    )
    rng = np.random.default_rng(seed)
    design = sampler.design(perturber, rng) if sampler else None
    budget = 1 + 2 * CHECK_PAIRS if learned else 0
    if sampler is not None and design is not None:
        budget = max(len(design.z), sampler.samples) if sampler.adaptive() else len(design.z)
    evaluate = _Evaluator(
        predict or model.predict_tensor, batch_size or model.preferred_batch_size, progress
    )
    n_curve = 2 * len(curve_steps(m)) if curves else 0
    reference = random_orders(m, seed)
    n_ref = len(np.unique(reference.masks, axis=0)) if curves else 0
    evaluate.total = 1 + budget + n_curve * (top_k if not classes else len(classes)) + n_ref
    full = evaluate.masks(np.ones((1, m), np.float32), perturber)[0]
    chosen = chosen or _choose_classes(model, full, classes, top_k)
    evaluate.total = 1 + budget + n_curve * len(chosen) + n_ref
    if gradients is not None:  # deterministic attributions: nothing to settle by sampling
        maps = maps or [gradients.attribute(perturber.image, perturber.base, c) for c in chosen]
        estimates = [gradient_estimate(g, perturber.labels, m) for g in maps]
        open_: list = [[] for _ in chosen]
        stop_reason = "exact"
    amortized = None
    if learned is not None:
        base = evaluate.masks(np.zeros((1, m), np.float32), perturber)[0]
        checked = evaluate.masks(check_coalitions(m, seed), perturber)
        amortized = amortized_estimates(
            learned, perturber.image, perturber.base, perturber.labels, m, full, base, checked,
            chosen,
            confidence, seed,
        )  # fmt: skip
        if amortized.outside:  # not what it learned: the per-image default explains it
            return _fallback(
                rgb, model, amortized.info, chosen,
                dict(
                    samples=samples, max_samples=max_samples, confidence=confidence,
                    settle_top=settle_top, tie_tolerance=tie_tolerance,
                    segmentation=segmentation, segments=segments, baseline=baseline, seed=seed,
                    batch_size=batch_size, predict=predict, progress=progress, regions=regions,
                    curves=curves,
                ),
            )  # fmt: skip
        estimates = amortized.estimates
        open_ = [[] for _ in chosen]
        stop_reason = "amortized"
    if sampler is not None and design is not None:
        estimates, open_, stop_reason = _sample(
            sampler, design, evaluate, perturber, rng, chosen, confidence, settle_top,
            tie_tolerance,
        )  # fmt: skip
    # the budget not spent no longer counts towards the progress
    evaluate.total = evaluate.done + n_curve * len(chosen) + n_ref
    boxes_areas = regions.boxes_and_areas[1]
    # XRAI's ``segments`` is a cap, not a target: fewer regions are no miss
    note = None if method == "xrai" else count_note(segmentation, segments or DEFAULT_SEGMENTS, m)
    if method == "xrai":
        remainder = grown.remainder if grown is not None else None
        orders = [xrai_order(g.pixels, perturber.labels, m, remainder) for g in maps]
    else:
        orders = [ranking(est.weights) for est in estimates]
    faithful: list[Faithfulness | None] = [None for _ in chosen]
    if curves:
        grids, all_curves, references = _curves(evaluate, perturber, chosen, orders, reference)
        for i, (c, order, at, (down, up), (rd, ri)) in enumerate(
            zip(chosen, orders, grids, all_curves, references, strict=True)
        ):
            if gradients:
                estimates[i].fit_r2 = curve_r2(
                    estimates[i],
                    np.vstack(curve_masks(order, at)),
                    np.concatenate([down[:, c], up[:, c]]),
                    # XRAI's intercept is f at black and white, not at the curves' baseline
                    additive=method == "integrated-gradients",
                )
            faithful[i] = replace(
                faithfulness(order, c, down, up, at),
                random_deletion_auc=rd,
                random_insertion_auc=ri,
            )
    explained = []
    for c, est, o, f in zip(chosen, estimates, open_, faithful, strict=True):
        # a deterministic method's weights have no sampling error: no interval, and nothing
        # to settle (``settled`` None: not applicable), rather than a certainty it never tested
        conformal = est.halfwidth is not None
        certain = est.deterministic and not conformal
        q = quantile(confidence, est.dof)
        settled = None if certain or conformal else not o
        stderr = est.halfwidth / q if est.halfwidth is not None else est.stderr
        explained.append(
            ClassExplanation(
                label=model.labels[c],
                class_index=c,
                probability=float(full[c]),
                intercept=float(est.intercept),
                fit_r2=float(est.fit_r2),
                weights=np.asarray(est.weights, dtype=np.float64),
                used_features=est.used_features,
                faithfulness=f,
                stderr=np.zeros(0) if certain else stderr,
                interval=np.zeros((0, 2)) if certain else intervals(est.weights, stderr, q),
                settled=settled,
                ties=[]
                if certain or conformal
                else ties(est.weights, est.cov, settle_top, q, tie_tolerance),
                warnings=class_warnings(
                    est.fit_r2, boxes_areas, settled, stop_reason, confidence, note
                ),
            )
        )
    top = np.argsort(-full, kind="stable")[: max(top_k, min(MIN_PREDICTIONS, len(full)))]
    return Explanation(
        image=rgb,
        regions=regions,
        model=model.name,
        method=method,
        seed=seed,
        baseline=baseline,
        samples=evaluate.design_rows,
        # XRAI's regions took one more forward pass: the whole image, to choose the classes
        model_evaluations=evaluate.done + sum(g.passes for g in maps) + (grown is not None),
        seconds=time.perf_counter() - start,
        predictions=[
            {"label": model.labels[i], "class_index": int(i), "probability": float(full[i])}
            for i in top
        ],
        classes=explained,
        confidence=confidence,
        tie_tolerance=tie_tolerance,
        stop_reason=stop_reason,
        max_samples=sampler.samples if sampler and sampler.adaptive() else None,
        amortized=amortized.info if amortized else None,
        **(_gradient_fields(method, maps, chosen, perturber.labels, m) if gradients else {}),
    )


def _fallback(
    image: np.ndarray,
    model: Model,
    info: dict,
    chosen: list[int],
    settings: dict,
) -> Explanation:
    """The default method's explanation of an image the amortized explainer's check found
    outside what it learned, with a warning and the check's verdict in ``amortized``."""
    exp = explain(image, model, method=DEFAULT_METHOD, classes=chosen, **settings)
    check = info["check"]
    warning = (
        "this image is outside what the amortized explainer learned (its check: residual "
        f"{check['residual']:.3g}, limit {check['residual_limit']:.3g}; efficiency gap "
        f"{check['efficiency_gap']:.3g}, limit {check['gap_limit']:.3g}; distance from its "
        f"training images {check['distance']:.3g}, limit {check['distance_limit']}): "
        f"explained with {DEFAULT_METHOD} instead"
    )
    for c in exp.classes:
        c.warnings.append(warning)
    exp.amortized = {**info, "fallback": DEFAULT_METHOD}
    return exp


def _gradient_fields(
    method: str, maps: list[GradientMap], chosen: list[int], labels: np.ndarray, m: int
) -> dict:
    """The gradient fields of the RESULT; XRAI's saliency is its own map (each pixel, its
    region's gain density) rather than the Integrated Gradients it was grown from."""
    if method == "xrai":
        maps = [replace(g, pixels=xrai_map(g.pixels, labels, m)) for g in maps]
    return gradient_fields(maps, chosen)


def check_method(
    model: Model, method: str, *, steps: int | None = None, layer: str | None = None
) -> None:
    """Raise a one-line :class:`InvalidInputError` unless ``model`` can be explained with
    ``method`` (and ``steps``/``layer``): a gradient method needs a model with a torch forward.

    The service calls it when a subscription's explainability is configured, so a bad choice is
    refused then rather than when a job runs.
    """
    if method not in METHODS:
        raise InvalidInputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    _gradients(method, model, steps, layer)


def _gradients(
    method: str, model: Model, steps: int | None, layer: str | None
) -> GradientAttributor | None:
    """The gradient attributor for a gradient method (checked before any work), else None."""
    if method not in GRADIENT_METHODS:
        if steps is not None or layer is not None:
            raise InvalidInputError("steps and layer apply to the gradient methods only")
        return None
    return GradientAttributor(
        method, require_forward(model, method, BLACK_BOX_METHODS), steps=steps, layer=layer
    )


Curves = tuple[np.ndarray, np.ndarray]


def _curves(
    evaluate: _Evaluator,
    perturber: Perturber,
    chosen: list[int],
    orders: list[np.ndarray],
    reference: RandomOrders,
) -> tuple[list[np.ndarray], list[Curves], list[tuple[float, float]]]:
    """Per class: the steps of its curves, the probabilities (len(steps), C) along its deletion
    and insertion curve, and its random-order reference AUCs.

    All classes' curve masks and the random orders' masks (the same for every class) go through
    the model together, in shared batches; then, again together, the steps some class still
    needs for exact sufficient and necessary sets.
    """
    m = perturber.count
    steps = [curve_steps(m) for _ in chosen]
    curves, ref_answers = _evaluate_curves(evaluate, perturber, orders, steps, reference.masks)
    refined = [
        np.union1d(s, flip_gaps(s, c, *cv)) for s, c, cv in zip(steps, chosen, curves, strict=True)
    ]
    if any(len(a) != len(b) for a, b in zip(refined, steps, strict=True)):
        steps = refined
        curves, _ = _evaluate_curves(
            evaluate, perturber, orders, steps, np.zeros((0, m), np.float32)
        )
    return steps, curves, [random_reference(reference, ref_answers, c) for c in chosen]


def _evaluate_curves(
    evaluate: _Evaluator,
    perturber: Perturber,
    orders: list[np.ndarray],
    steps: list[np.ndarray],
    extra: np.ndarray,
) -> tuple[list[Curves], np.ndarray]:
    """Probabilities along each order's deletion and insertion curve at its steps, and the
    answers to the ``extra`` masks, evaluated in one pass."""
    blocks = [np.vstack(curve_masks(o, s)) for o, s in zip(orders, steps, strict=True)]
    out = evaluate.masks(np.vstack([*blocks, extra]), perturber)
    curves: list[Curves] = []
    start = 0
    for s in steps:
        n = len(s)
        curves.append((out[start : start + n], out[start + n : start + 2 * n]))
        start += 2 * n
    return curves, out[start:]


class _Evaluator:
    """Runs perturbed images through the model in fixed-size batches, reporting progress.

    Answers for region masks are remembered, so a mask the design already evaluated (the whole
    image, the empty image, one region on or off) costs nothing again in the curves.
    """

    def __init__(self, predict: Predict, batch_size: int, progress: Progress | None) -> None:
        self.predict = predict
        self.batch_size = batch_size
        self.progress = progress
        self.done = 0
        self.total = 0
        #: distinct design rows evaluated (the RESULT's ``samples``)
        self.design_rows = 0
        self._fraction = 0.0
        self._seen: dict[bytes, np.ndarray] = {}

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        out = np.asarray(self.predict(inputs), dtype=np.float32)
        self.done += len(inputs)
        if self.progress is not None:
            # reported as done/total = a fraction that never goes down, whatever the plan was
            self._fraction = max(self._fraction, self.done / max(self.total, self.done, 1))
            self.progress(round(self._fraction * PROGRESS_SCALE), PROGRESS_SCALE)
        return out

    def design(self, design: Design, perturber: Perturber, start: int = 0) -> np.ndarray:
        """Answers (n - start, C) for rows ``start..`` of a method's design."""
        before = self.done
        if design.binary:
            out = self.masks(design.z[start:], perturber)
        else:
            n = len(design.z)
            parts = [
                self(design.images(perturber, s, min(n, s + self.batch_size)))
                for s in range(start, n, self.batch_size)
            ]
            out = np.concatenate(parts)
        self.design_rows += self.done - before
        return out

    def masks(self, z: np.ndarray, perturber: Perturber) -> np.ndarray:
        """Answers (n, C) for binary region masks, evaluating only the ones not seen yet (a
        mask repeated within ``z``, as sampled designs repeat coalitions, is evaluated once)."""
        keys = [row.tobytes() for row in np.asarray(z, dtype=bool)]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in self._seen:
                first.setdefault(k, i)
        todo = list(first.values())
        for s in range(0, len(todo), self.batch_size):
            idx = todo[s : s + self.batch_size]
            for i, row in zip(idx, self(perturber.regions(z[idx])), strict=True):
                self._seen[keys[i]] = row
        self.total -= len(z) - len(todo)
        return np.stack([self._seen[k] for k in keys])


def _choose_classes(
    model: Model, full: np.ndarray, classes: Sequence[str | int] | None, top_k: int
) -> list[int]:
    if classes:
        out: list[int] = []
        for c in classes:
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not 0 <= int(c) < model.num_classes:
                    raise InvalidInputError(
                        f"class index {c} is out of range (the model has {model.num_classes})"
                    )
                idx = int(c)
            elif str(c) in model.labels:
                idx = model.labels.index(str(c))
            elif str(c).isdigit() and int(str(c)) < model.num_classes:
                idx = int(str(c))
            else:
                raise InvalidInputError(f"unknown class {c!r}; not one of the model's labels")
            if idx not in out:
                out.append(idx)
        return out
    if model.problem_type == "binary" and top_k == 1:
        return [int(i) for i in np.argsort(-full, kind="stable")]
    if top_k > model.num_classes:
        raise InvalidInputError(f"top_k={top_k} but the model has {model.num_classes} classes")
    return [int(i) for i in np.argsort(-full, kind="stable")[:top_k]]


def _validate_uncertainty(
    max_samples: int | None, confidence: float, settle_top: int, tie_tolerance: float
) -> None:
    if max_samples is not None and not 4 <= max_samples <= 100_000:
        raise InvalidInputError(f"max_samples must be between 4 and 100000, not {max_samples}")
    if not 0.5 <= confidence < 1.0:
        raise InvalidInputError(f"confidence must be at least 0.5 and below 1, not {confidence}")
    if settle_top < 1:
        raise InvalidInputError(f"settle_top must be at least 1, not {settle_top}")
    if not 0.0 <= tie_tolerance < 1.0:
        raise InvalidInputError(
            f"tie_tolerance must be at least 0 and below 1, not {tie_tolerance}"
        )


def _sample(
    explainer: Explainer,
    design: Design,
    evaluate: _Evaluator,
    perturber: Perturber,
    rng: np.random.Generator,
    chosen: list[int],
    confidence: float,
    settle_top: int,
    tie_tolerance: float,
) -> tuple[list[Estimate], list[list[np.ndarray]], str]:
    """Evaluate the design and estimate each class, in rounds while the explainer is adaptive
    and some class's top regions are not settled: ``(estimates, open contrasts, stop reason)``."""
    y = evaluate.design(design, perturber)
    while True:
        estimates = [explainer.estimate(design, y[:, c]) for c in chosen]
        open_ = [
            unsettled_contrasts(
                e.weights, e.cov, settle_top, quantile(confidence, e.dof), tie_tolerance
            )
            for e in estimates
        ]
        used = evaluate.design_rows
        if design.exact:
            return estimates, open_, "exact"
        if not explainer.adaptive():
            return estimates, open_, "budget"
        if not any(open_):
            return estimates, open_, "settled"
        if used >= explainer.samples - 1:
            return estimates, open_, "max_samples"
        rows = min(explainer.round_rows(perturber.count), explainer.samples - used)
        before = len(design.z)
        focus = [(y[:, c], o) for c, o in zip(chosen, open_, strict=True) if o]
        design = explainer.extend(design, focus, rng, rows)
        y = np.vstack([y, evaluate.design(design, perturber, before)])


def _validate(
    method: str,
    segmentation: str,
    baseline: str,
    samples: int | None,
    segments: int | None,
    top_k: int,
    batch_size: int | None,
) -> None:
    if method not in METHODS and method not in EXPLAINERS and method != "amortized":
        raise InvalidInputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if segmentation not in SEGMENTATIONS:
        raise InvalidInputError(
            f"unknown segmentation {segmentation!r}; choose one of {', '.join(SEGMENTATIONS)}"
        )
    if baseline not in BASELINES:
        raise InvalidInputError(
            f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}"
        )
    if samples is not None and not 1 <= samples <= 100_000:
        raise InvalidInputError(f"samples must be between 1 and 100000, not {samples}")
    if segments is not None and not 2 <= segments <= 1000:
        raise InvalidInputError(f"segments must be between 2 and 1000, not {segments}")
    if top_k < 1:
        raise InvalidInputError(f"top_k must be at least 1, not {top_k}")
    if batch_size is not None and batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, not {batch_size}")
