"""ONNX object detectors, described by a ``limner-model.json`` with ``problem_type: detection``.

The ``detection`` block says how to read the graph's outputs:

- ``"layout": "nms"`` (the default): the graph already ran non-maximum suppression; outputs
  ``boxes`` (K, 4), ``scores`` (K,) and ``labels`` (K,) are named (a leading batch dimension of
  1 is dropped).
- ``"layout": "raw"``: one output ``raw`` of YOLO's head shape, ``(1, 4 + C, N)`` or
  ``(1, N, 4 + C)``: N candidate boxes, each with C class scores; limner keeps those scoring at
  least ``score_threshold`` (the best ``10 × max_detections`` of them) and runs its own
  per-class NMS (``iou_threshold``), at most ``max_detections``.

``box_format`` (``xyxy``, ``xywh``, ``cxcywh``) and ``normalized`` (0..1 instead of pixels)
describe the boxes. Every field is checked when the detector is read, with errors that name it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from limner.errors import InvalidInputError, ModelError
from limner.models.detection import BOX_FORMATS, Detector, nms, to_xyxy
from limner.models.metadata import ModelMetadata
from limner.models.onnx import open_session

if TYPE_CHECKING:
    from limner.models.detector_gradients import DetectorForward

#: Candidates of a raw head that go into NMS: this many per detection kept at most.
PRE_NMS = 10

#: How a detector's outputs are laid out.
LAYOUTS = ("nms", "raw")


@dataclass(frozen=True)
class DetectionSpec:
    """The ``detection`` block of a detector's metadata."""

    layout: str = "nms"
    boxes: str = "boxes"
    scores: str = "scores"
    labels: str = "labels"
    raw: str = "output0"
    box_format: str = "xyxy"
    normalized: bool = False
    score_threshold: float = 0.25
    iou_threshold: float = 0.5
    max_detections: int = 100

    @classmethod
    def from_dict(cls, data: Any) -> DetectionSpec:
        """The block from its JSON form; a one-line error naming a bad field."""
        if not isinstance(data, dict):
            raise InvalidInputError("model metadata: 'detection' must be an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidInputError(f"model metadata: unknown detection field {unknown[0]!r}")
        spec = cls(**data)
        if spec.layout not in LAYOUTS:
            raise InvalidInputError(f"detection.layout: {', '.join(LAYOUTS)}, not {spec.layout!r}")
        if spec.box_format not in BOX_FORMATS:
            raise InvalidInputError(
                f"detection.box_format: {', '.join(BOX_FORMATS)}, not {spec.box_format!r}"
            )
        for name in ("score_threshold", "iou_threshold"):
            value = getattr(spec, name)
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise InvalidInputError(f"detection.{name}: a number in 0..1, not {value!r}")
        if not isinstance(spec.max_detections, int) or not 1 <= spec.max_detections <= 1000:
            raise InvalidInputError("detection.max_detections: a whole number in 1..1000")
        if not isinstance(spec.normalized, bool):
            raise InvalidInputError("detection.normalized: true or false")
        return spec


def detector_metadata(data: dict[str, Any]) -> tuple[ModelMetadata, DetectionSpec]:
    """The labels and input (as a classifier's metadata) and the detection block of a
    detector's ``limner-model.json``."""
    if data.get("problem_type") != "detection":
        raise InvalidInputError("model metadata: a detector has 'problem_type': 'detection'")
    spec = DetectionSpec.from_dict(data.get("detection", {}))
    rest = {k: v for k, v in data.items() if k != "detection"}
    meta = ModelMetadata.from_dict({**rest, "problem_type": "multiclass"})
    return meta, spec


def load_onnx_detector(path: str | Path, metadata: dict[str, Any]) -> Detector:
    """An ONNX detector at ``path`` described by ``metadata`` (the JSON of its
    ``limner-model.json``)."""
    spec = detector_metadata(metadata)[1]
    session, _ = open_session(path)
    check_outputs(spec, {o.name for o in session.get_outputs()})
    input_name = session.get_inputs()[0].name
    wanted = wanted_outputs(spec)
    shown = Path(path).name

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        try:
            out = session.run(wanted, {input_name: x})
        except Exception as exc:
            raise ModelError(f"{shown}: ONNX Runtime failed ({exc})") from exc
        return dict(zip(wanted, out, strict=True))

    # a raw head with a free batch dimension scores a whole batch in one run
    batched = spec.layout == "raw" and not isinstance(session.get_inputs()[0].shape[0], int)
    return outputs_detector(run, metadata, batched=batched, shown=shown)


def wanted_outputs(spec: DetectionSpec) -> list[str]:
    """The outputs a detector's layout reads, by name."""
    return [spec.raw] if spec.layout == "raw" else [spec.boxes, spec.scores, spec.labels]


def check_outputs(spec: DetectionSpec, names: set[str]) -> None:
    """A one-line error when the model lacks an output its layout reads."""
    missing = [n for n in wanted_outputs(spec) if n not in names]
    if missing:
        raise InvalidInputError(
            f"detection: the model has no output {missing[0]!r} (it has {', '.join(sorted(names))})"
        )


def outputs_detector(
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    metadata: dict[str, Any],
    *,
    batched: bool = False,
    shown: str = "detector",
    forward: DetectorForward | None = None,
) -> Detector:
    """A :class:`Detector` of any format: ``run`` takes a preprocessed batch (the metadata's
    ``input``) and returns the outputs :func:`wanted_outputs` names, which are read as the
    ``detection`` block says. ``batched``: whether ``run`` takes several images at once (else
    it is called an image at a time). ``forward``: the detector's differentiable forward,
    where it has one."""
    meta, spec = detector_metadata(metadata)
    w, h = meta.input.width, meta.input.height
    classes = len(meta.labels)

    def fn(images: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        x = meta.input.preprocess(images)
        if batched and len(images) > 1:
            out = run(x)
            if spec.layout == "raw":
                raw = np.asarray(out[spec.raw])
                if raw.ndim == 3 and raw.shape[0] == len(images):
                    return [
                        _decode_raw(raw[i : i + 1], spec, classes, w, h) for i in range(len(raw))
                    ]
            else:
                boxes = np.asarray(out[spec.boxes])
                if boxes.ndim == 3 and boxes.shape[0] == len(images):
                    return [_decode_nms(out, i, spec, w, h) for i in range(len(images))]
        found = []
        for i in range(len(images)):
            out = run(x[i : i + 1])
            if spec.layout == "raw":
                found.append(_decode_raw(out[spec.raw], spec, classes, w, h))
            else:
                found.append(_decode_nms(out, None, spec, w, h))
        return found

    name = meta.name if meta.name != "model" else shown
    return Detector(fn, meta.labels, (w, h), name=name, metadata=metadata, forward=forward)


def _decode_nms(
    out: dict[str, np.ndarray], row: int | None, spec: DetectionSpec, width: int, height: int
) -> tuple[np.ndarray, ...]:
    """Boxes, scores and labels of a graph with its own NMS (row ``row`` of a batch, or the
    outputs of one image); rows whose class is negative are padding and are dropped, as
    detectors that pad to a fixed count (and limner's own ``/v2``) mark them."""

    def pick(name: str, ndim: int) -> np.ndarray:
        a = np.asarray(out[name])
        return a[row] if row is not None else _unbatched(a, ndim)

    boxes = pick(spec.boxes, 2)
    scores = pick(spec.scores, 1).reshape(-1)
    labels = np.rint(np.asarray(pick(spec.labels, 1), dtype=np.float64)).reshape(-1)
    keep = labels >= 0 if len(labels) == len(scores) else slice(None)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == len(labels):
        boxes = boxes[keep]
    xyxy = to_xyxy(boxes, spec.box_format, normalized=spec.normalized, width=width, height=height)
    return xyxy, scores[keep], labels[keep].astype(np.int64)


def _unbatched(a: np.ndarray, ndim: int) -> np.ndarray:
    """``a`` without a leading batch dimension of 1."""
    a = np.asarray(a)
    return a[0] if a.ndim == ndim + 1 and a.shape[0] == 1 else a


def _decode_raw(
    raw: np.ndarray, spec: DetectionSpec, classes: int, width: int, height: int
) -> tuple[np.ndarray, ...]:
    """Boxes, scores, labels and class scores of a YOLO-style head, after limner's NMS."""
    a = raw_rows(np.asarray(raw), classes).astype(np.float64)
    boxes = to_xyxy(
        a[:, :4], spec.box_format, normalized=spec.normalized, width=width, height=height
    )
    class_scores = a[:, 4:]
    idx = _kept_candidates(class_scores, boxes, spec)
    kept = class_scores[idx]
    return boxes[idx], kept.max(axis=1), kept.argmax(axis=1), kept


def raw_rows(raw: Any, classes: int) -> Any:
    """A raw head's candidates as rows ``(N, 4 + C)`` (numpy or torch), from ``(1, 4 + C, N)``
    or ``(1, N, 4 + C)`` (or either without the batch dimension)."""
    a = raw[0] if raw.ndim == 3 and raw.shape[0] == 1 else raw
    if a.ndim != 2 or 4 + classes not in a.shape:
        raise InvalidInputError(
            f"detection: a raw output must be (1, 4 + {classes}, N) or (1, N, 4 + {classes}) for "
            f"{classes} labels, got {tuple(raw.shape)}"
        )
    if a.shape[0] == 4 + classes and a.shape[1] != 4 + classes:
        a = a.T
    return a


def _kept_candidates(
    class_scores: np.ndarray, boxes: np.ndarray, spec: DetectionSpec
) -> np.ndarray:
    """Indices of the raw head's candidates that are detections, best first: those scoring at
    least the threshold (the best ``PRE_NMS × max_detections``), after per-class NMS."""
    scores = class_scores.max(axis=1)
    labels = class_scores.argmax(axis=1)
    keep = np.flatnonzero(scores >= spec.score_threshold)
    if len(keep) > PRE_NMS * spec.max_detections:  # the best candidates only, as YOLO's own NMS
        keep = keep[np.argsort(-scores[keep], kind="stable")[: PRE_NMS * spec.max_detections]]
    kept: list[int] = []
    for c in np.unique(labels[keep]):
        of_class = keep[labels[keep] == c]
        kept += [
            int(of_class[j]) for j in nms(boxes[of_class], scores[of_class], spec.iou_threshold)
        ]
    order = sorted(kept, key=lambda j: -scores[j])[: spec.max_detections]
    return np.asarray(order, dtype=np.int64)
