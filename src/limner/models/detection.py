"""Object detectors: what they return, the box formats they use, and limner's own NMS.

A detector takes RGB uint8 images at its input size and returns, per image, its detections:
boxes, a score each and a class each (and, where the detector gives them, every class's score).
limner keeps boxes as ``xyxy`` pixels of the detector's input; :func:`to_xyxy` converts the
other formats detectors publish (``xywh``, ``cxcywh``, pixels or normalized to 0..1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from limner.errors import InvalidInputError

if TYPE_CHECKING:
    from limner.models.detector_gradients import DetectorForward

#: The box formats a detector may declare.
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


@dataclass(frozen=True)
class Detections:
    """The detections of one image: ``boxes`` (K, 4) ``xyxy`` pixels of the detector's input,
    ``scores`` (K,), ``labels`` (K,) class indices and, where given, ``class_scores`` (K, C)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def class_vectors(self, num_classes: int) -> np.ndarray:
        """(K, C): each detection's class scores, or its one-hot class where none are given."""
        if self.class_scores is not None:
            return self.class_scores.astype(np.float64)
        out = np.zeros((len(self), num_classes))
        out[np.arange(len(self)), self.labels] = 1.0
        return out


def to_xyxy(
    boxes: np.ndarray, box_format: str, *, normalized: bool, width: int, height: int
) -> np.ndarray:
    """``boxes`` (K, 4) in ``box_format`` as ``xyxy`` pixels of a ``width``×``height`` input."""
    if box_format not in BOX_FORMATS:
        raise InvalidInputError(
            f"box format must be one of {', '.join(BOX_FORMATS)}, not {box_format!r}"
        )
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if normalized:
        b = b * np.array([width, height, width, height], dtype=np.float64)
    return corners(b, box_format, np.concatenate)


def corners(b: Any, box_format: str, cat: Callable[..., Any]) -> Any:
    """``xyxy`` corners of boxes ``b`` (K, 4) in ``box_format`` (pixels), for numpy arrays
    (``cat=np.concatenate``) and torch tensors (``cat=torch.cat``) alike."""
    if box_format == "xywh":
        return cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)
    if box_format == "cxcywh":
        return cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    return b


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``xyxy`` box with each of ``boxes`` (K, 4)."""
    return pairwise_iou(np.asarray(box, dtype=np.float64).reshape(1, 4), boxes)[0]


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(J, K): the IoU of each ``xyxy`` box of ``a`` (J, 4) with each of ``b`` (K, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Indices of the boxes non-maximum suppression keeps, best first: a box is dropped when
    it overlaps a better-scoring kept box by more than ``threshold`` IoU."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order]
    overlaps = pairwise_iou(b, b)
    dropped = np.zeros(len(b), dtype=bool)
    keep: list[int] = []
    for i in range(len(b)):
        if dropped[i]:
            continue
        keep.append(i)
        dropped |= overlaps[i] > threshold
    return order[np.asarray(keep, dtype=np.int64)]


def checked(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    class_scores: np.ndarray | None = None,
    name: str = "detector",
) -> Detections:
    """:class:`Detections` from a detector's raw arrays, or one line saying what is wrong
    (mismatched lengths, non-finite boxes or scores, class indices out of range)."""
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise InvalidInputError(f"{name}: boxes must be (K, 4), got {tuple(b.shape)}")
    if not (len(b) == len(s) == len(lab)):
        raise InvalidInputError(
            f"{name}: {len(b)} boxes, {len(s)} scores and {len(lab)} labels: they must match"
        )
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise InvalidInputError(f"{name}: a box or score is not a finite number (NaN or inf)")
    if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
        raise InvalidInputError(
            f"{name}: a class index is outside 0..{num_classes - 1} (the model's {num_classes} "
            "labels)"
        )
    cs = None if class_scores is None else np.asarray(class_scores, dtype=np.float64)
    if cs is not None and cs.shape != (len(b), num_classes):
        raise InvalidInputError(
            f"{name}: class scores must be ({len(b)}, {num_classes}), got {tuple(cs.shape)}"
        )
    return Detections(b, s, lab.astype(np.int64), cs)


class Detector:
    """An object detector given as a Python function: uint8 images ``(N, H, W, 3)`` at
    ``input_size`` in; per image, ``(boxes, scores, labels)`` out (after NMS), boxes in
    ``box_format`` (pixels, or 0..1 where ``normalized``), and optionally a fourth array, every
    class's score of each box (K, C)."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], Sequence[tuple[np.ndarray, ...]]],
        labels: Sequence[str],
        input_size: tuple[int, int],
        *,
        box_format: str = "xyxy",
        normalized: bool = False,
        name: str = "detector",
        metadata: dict[str, Any] | None = None,
        forward: DetectorForward | None = None,
    ) -> None:
        """``metadata``: the detector's ``limner-model.json`` where it has one (what a
        deployment records); default: its labels, input size and box format. ``forward``: its
        differentiable torch forward, where it has one (the gradient methods need it)."""
        if box_format not in BOX_FORMATS:
            raise InvalidInputError(
                f"box format must be one of {', '.join(BOX_FORMATS)}, not {box_format!r}"
            )
        self._fn = fn
        self.labels = list(labels)
        self.input_size = input_size
        self.box_format = box_format
        self.normalized = normalized
        self.name = name
        self.forward = forward
        self.metadata: dict[str, Any] = metadata or {
            "labels": self.labels,
            "problem_type": "detection",
            "name": name,
            "input": {"width": input_size[0], "height": input_size[1]},
            "detection": {"box_format": box_format, "normalized": normalized},
        }

    def detect(self, images: np.ndarray) -> list[Detections]:
        """The detections of each image (``xyxy`` pixels of the input size)."""
        w, h = self.input_size
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (h, w, 3) or images.dtype != np.uint8:
            raise InvalidInputError(
                f"{self.name}: expected uint8 images of shape (N, {h}, {w}, 3), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        out = list(self._fn(images))
        if len(out) != len(images):
            raise InvalidInputError(
                f"{self.name}: {len(images)} images in, {len(out)} detection lists out"
            )
        result = []
        for boxes, scores, labels, *class_scores in out:
            d = checked(
                boxes,
                scores,
                labels,
                len(self.labels),
                class_scores=class_scores[0] if class_scores else None,
                name=self.name,
            )
            xyxy = to_xyxy(d.boxes, self.box_format, normalized=self.normalized, width=w, height=h)
            self._check_fit(xyxy)
            result.append(Detections(xyxy, d.scores, d.labels, d.class_scores))
        return result

    def _check_fit(self, boxes: np.ndarray) -> None:
        """Refuse boxes that cannot be in the declared format: corners in the wrong order, or
        far outside the input (a box of pixels declared ``normalized``, say)."""
        w, h = self.input_size
        if not len(boxes):
            return
        wrong_order = (boxes[:, 2] < boxes[:, 0] - 1e-6) | (boxes[:, 3] < boxes[:, 1] - 1e-6)
        far = (
            (boxes[:, [0, 2]] < -w).any(axis=1)
            | (boxes[:, [0, 2]] > 2 * w).any(axis=1)
            | (boxes[:, [1, 3]] < -h).any(axis=1)
            | (boxes[:, [1, 3]] > 2 * h).any(axis=1)
        )
        bad = np.flatnonzero(wrong_order | far)
        if len(bad):
            fmt = self.box_format + (", normalized" if self.normalized else ", pixels")
            box = [round(float(v), 1) for v in boxes[bad[0]]]
            raise InvalidInputError(
                f"{self.name}: box {box} (as xyxy) does not fit a {w}×{h} input: the declared "
                f"box format ({fmt}) is not the detector's"
            )
