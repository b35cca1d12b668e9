"""Deploying means it runs: a loaded model is checked against its metadata before it is used.

:func:`verify_model` compares what the model itself says of its tensors
(:meth:`~limner.models.Model.signature`: fixed input size, layout, channels, element type,
output count) with its metadata, then scores two synthetic images through the model's own
preprocessing and forward pass (the path every real score takes) and checks what comes back:
as many scores as labels, finite, and, for a model declared to output probabilities, inside
[0, 1] and (several outputs) summing to 1 per image. Each problem is an
:class:`~limner.errors.InvalidInputError` (422) naming the field and what the model has, e.g.
``labels: the model has 3 outputs but 2 labels were given``.
"""

from __future__ import annotations

import numpy as np

from limner.errors import InvalidInputError, LimnerError, ModelUnavailableError
from limner.models.base import PROBABILITY_SLACK, Model
from limner.models.metadata import ModelMetadata, output_count_problem, plain_text

#: How far the scores of one image may sum from 1 for a model declared to output (softmax)
#: probabilities over several outputs (float16 rounding stays well inside it).
SUM_TOLERANCE = 0.02
#: Pixels of an input above which the check scores one synthetic image, not two (a batch of
#: two such tensors could pass a worker's memory limit where one real image does not).
LARGE_INPUT = 1024 * 1024
#: How close to 1 every image's scores must sum, all of them in [0, 1], for a model declared
#: to output logits to be taken for one whose outputs are probabilities already.
PROBABILITY_LIKE = 1e-4


def synthetic_images(width: int, height: int) -> np.ndarray:
    """Two uint8 RGB images ``(2, height, width, 3)``: a mid-gray one and a smooth colour
    pattern (what a deployment is checked with; no real image needed)."""
    gray = np.full((height, width, 3), 128, np.uint8)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    pattern = np.stack(
        [255 * x * np.ones_like(y), 255 * y * np.ones_like(x), 255 * (1 - x) * y], axis=-1
    )
    return np.stack([gray, pattern.astype(np.uint8)])


def verify_model(model: Model) -> np.ndarray:
    """Check ``model`` against its metadata and score two synthetic images with it; return
    their probabilities.

    Raises:
        InvalidInputError: a mismatch, naming the field and what the model has.
        ModelUnavailableError: the model cannot be reached (a remote server that is down).
    """
    meta = model.metadata
    problems = model.signature().mismatches(meta)
    if problems:
        raise InvalidInputError(_sentence(problems))
    w, h = model.input_size
    images = synthetic_images(w, h)
    x = model.preprocess(images if w * h <= LARGE_INPUT else images[1:])
    try:
        raw = np.asarray(model._forward(x), dtype=np.float32)
    except ModelUnavailableError:
        raise
    except LimnerError as exc:
        raise InvalidInputError(_failed(meta, x, exc.message)) from exc
    except Exception as exc:  # an adapter that let a library's error through
        raise InvalidInputError(_failed(meta, x, f"{type(exc).__name__}: {exc}")) from exc
    problems = output_problems(raw, meta, len(x))
    if problems:
        raise InvalidInputError(_sentence(problems))
    return model._to_probabilities(raw)


def output_problems(raw: np.ndarray, meta: ModelMetadata, rows: int) -> list[str]:
    """What is wrong with a model's raw output ``raw`` for ``rows`` images under ``meta``."""
    if raw.ndim == 0 or raw.shape[0] != rows:
        return [f"output: the model answered {tuple(raw.shape)} for {rows} images, not a row each"]
    scores = raw.reshape(rows, -1) if raw.ndim > 1 else raw[:, None]
    count = scores.shape[1]
    found = output_count_problem(count, len(meta.labels))
    if found:
        return found
    if not np.isfinite(scores).all():
        return [
            "output: the model returned NaN or infinite scores for a plain image (check "
            "input.scale, input.mean and input.std)"
        ]
    low, high = float(scores.min()), float(scores.max())
    several = count >= 2
    sums = scores.sum(axis=1) if several else None
    if meta.output == "probabilities":
        if low < -PROBABILITY_SLACK or high > 1 + PROBABILITY_SLACK:
            return [
                f"output: the model's outputs range from {low:.3g} to {high:.3g}, outside "
                "[0, 1], so they are not probabilities; give output: logits"
            ]
        if sums is not None and float(np.abs(sums - 1).max()) > SUM_TOLERANCE:
            worst = float(sums[np.argmax(np.abs(sums - 1))])
            return [
                f"output: the model's {count} outputs of an image sum to {worst:.3g}, not 1, "
                f"so they are not softmax probabilities of {meta.problem_type} classes "
                "(independent sigmoid scores are not a classifier limner explains); if they "
                "are logits, give output: logits"
            ]
    elif (
        sums is not None
        and low >= 0.0
        and high <= 1.0
        and float(np.abs(sums - 1).max()) < PROBABILITY_LIKE
    ):
        return [
            "output: the model's outputs are probabilities already (each image's sum to 1), "
            "not logits; give output: probabilities"
        ]
    return []


def _sentence(problems: list[str]) -> str:
    return "; ".join(problems)


def _failed(meta: ModelMetadata, x: np.ndarray, problem: str) -> str:
    spec = meta.input
    return (
        f"input: the model cannot run on what its input settings make (a {spec.layout} "
        f"{spec.dtype} tensor of shape {tuple(x.shape)}, {spec.channels} channel"
        f"{'s' if spec.channels != 1 else ''}): {plain_text(problem, 600)}"
    )
