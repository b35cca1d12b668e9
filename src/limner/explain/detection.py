"""Explaining one detection of an object detector: which regions made the model see this box.

The target of a masked image is D-RISE's similarity (Petsiuk et al., CVPR 2021): of the
detections the detector makes on the masked image, the best match to the explained box, by
IoU × the cosine of the class vectors × the detection's score. Wrapped as a two-class model
(the box's similarity and its complement, :func:`box_target`), every region method of the
engine explains it unchanged (``kernelshap``, ``lime``, ``occlusion``, ``rise``), with its
intervals, curves, panes and region sets. :func:`drise_map` is D-RISE itself: random
low-resolution masks weighted by their similarity, a pixel map.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from limner.errors import InvalidInputError
from limner.explain.engine import check_method, explain
from limner.explain.methods.rise import mask_design, masks
from limner.explain.result import LABELS, Explanation
from limner.imaging.decode import ImageInput, decode_image
from limner.imaging.transform import resize
from limner.models.base import CallableModel
from limner.models.detection import Detections, Detector, iou
from limner.models.gradients import GRADIENT_METHODS, UNHOOKED_METHODS, TorchForward
from limner.models.metadata import InputSpec, ModelMetadata

if TYPE_CHECKING:
    from limner.models.detector_gradients import DetectorForward

#: The methods that explain a detection through :func:`box_target`.
DETECTION_METHODS = ("kernelshap", "lime", "occlusion", "rise", "drise")


@dataclass(frozen=True)
class Target:
    """The explained detection: its ``index`` among the image's detections, ``box`` (``xyxy``
    pixels of the detector's input), class ``label`` (an index), ``score`` and class vector."""

    index: int
    box: np.ndarray
    label: int
    score: float
    vector: np.ndarray


def pick_target(
    detections: Detections, num_classes: int, *, box: int | None = None, label: int | None = None
) -> Target:
    """The detection to explain: number ``box`` (in the detector's order), or the best-scoring
    one of class ``label``, or the best-scoring one; a one-line error when there is none."""
    n = len(detections)
    if n == 0:
        raise InvalidInputError("the detector found nothing in this image: no box to explain")
    if box is not None:
        if not 0 <= box < n:
            raise InvalidInputError(f"box {box}: the detector found {n} boxes (0..{n - 1})")
        i = box
    else:
        candidates = np.arange(n) if label is None else np.flatnonzero(detections.labels == label)
        if len(candidates) == 0:
            raise InvalidInputError(f"no box of class {label} among the {n} detections")
        i = int(candidates[np.argmax(detections.scores[candidates])])
    vectors = detections.class_vectors(num_classes)
    return Target(
        i,
        detections.boxes[i].copy(),
        int(detections.labels[i]),
        float(detections.scores[i]),
        vectors[i],
    )


def given_target(
    box: np.ndarray, label: int | None, detections: Detections, num_classes: int, *, index: int
) -> Target:
    """A target that is not one of ``detections``: ``box`` (``xyxy`` pixels of the detector's
    input) of class ``label``, with the score of the detection that matches it best (by D-RISE's
    similarity, 0 when none does)."""
    if label is None or not 0 <= label < num_classes:
        raise InvalidInputError("a box given by its corners needs its class (label=)")
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise InvalidInputError("a box is [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
    vector = np.zeros(num_classes)
    vector[label] = 1.0
    probe = Target(index, box, label, 1.0, vector)
    score = similarity(probe, detections, num_classes) if len(detections) else 0.0
    return replace(probe, score=score)


def similarity(target: Target, detections: Detections, num_classes: int) -> float:
    """D-RISE's similarity of ``target`` to the best-matching of ``detections``, in 0..1:
    IoU × cosine of the class vectors × the detection's score (its objectness)."""
    if len(detections) == 0:
        return 0.0
    vectors = detections.class_vectors(num_classes)
    norms = np.linalg.norm(vectors, axis=1) * max(float(np.linalg.norm(target.vector)), 1e-12)
    cosine = vectors @ target.vector / np.maximum(norms, 1e-12)
    scores = np.clip(detections.scores, 0.0, 1.0)
    return float(np.clip(np.max(iou(target.box, detections.boxes) * cosine * scores), 0.0, 1.0))


def similarity_tensor(target: Target, boxes: Any, scores: Any, vectors: Any) -> Any:
    """:func:`similarity` in torch, differentiable in the detections' ``boxes`` (K, 4)
    ``xyxy``, ``scores`` (K,) and class ``vectors`` (K, C)."""
    import torch

    if boxes.shape[0] == 0:
        return scores.sum() * 0.0  # nothing found: 0, still part of the graph
    t = boxes.new_tensor(target.box)
    v = vectors.new_tensor(target.vector)
    w = (torch.minimum(boxes[:, 2], t[2]) - torch.maximum(boxes[:, 0], t[0])).clamp(min=0)
    h = (torch.minimum(boxes[:, 3], t[3]) - torch.maximum(boxes[:, 1], t[1])).clamp(min=0)
    inter = w * h
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas + (t[2] - t[0]) * (t[3] - t[1]) - inter
    overlap = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    norms = vectors.norm(dim=1) * v.norm().clamp(min=1e-12)
    cosine = vectors @ v / norms.clamp(min=1e-12)
    return (overlap * cosine * scores.clamp(0.0, 1.0)).max().clamp(0.0, 1.0)


def box_forward(forward: DetectorForward, target: Target, metadata: ModelMetadata) -> TorchForward:
    """The box target's differentiable forward: float pixels → (similarity, its complement),
    through the detector's module and its preprocessing (``metadata``: the box target's)."""
    import torch

    def call(x: Any) -> Any:
        p = torch.stack([similarity_tensor(target, *c) for c in forward.candidates(x)])
        return torch.stack([p, 1.0 - p], dim=1)

    meta = replace(metadata, input=forward.model_metadata.input)  # the detector's own preprocessing
    return TorchForward(
        module=forward.module,
        metadata=meta,
        device=torch.device("cpu"),
        hookable=forward.hookable,
        call=call,
        kind=forward.kind,
    )


class BoxModel(CallableModel):
    """The two-class model of a box target, with the detector's differentiable forward where
    it has one."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], metadata: ModelMetadata,
                 *, name: str, forward: Callable[[], TorchForward] | None) -> None:  # fmt: skip
        super().__init__(fn, metadata, name=name)
        self._torch = forward

    def torch_forward(self) -> TorchForward | None:
        """The box score's torch forward (:func:`box_forward`), or None (a black box)."""
        return self._torch() if self._torch is not None else None


def detection_methods(detector: Detector) -> tuple[str, ...]:
    """The methods a box of ``detector`` can be explained with: the region methods, and the
    gradient ones where it has a torch forward (Grad-CAM where its layers can be hooked)."""
    if detector.forward is None:
        return DETECTION_METHODS
    return DETECTION_METHODS + (GRADIENT_METHODS if detector.forward.hookable else UNHOOKED_METHODS)


def check_detection_method(
    detector: Detector, method: str, *, steps: int | None = None, layer: str | None = None
) -> None:
    """A one-line :class:`InvalidInputError` unless a box of ``detector`` can be explained with
    ``method`` (and ``steps``/``layer``)."""
    if method in GRADIENT_METHODS:
        if detector.forward is None:
            raise InvalidInputError(
                f"{method} needs gradients, and {detector.name} exposes none (TorchScript, "
                "PyTorch and Hugging Face detectors do); its boxes are explained with "
                f"{', '.join(DETECTION_METHODS)}"
            )
        probe = Target(0, np.array([0.0, 0.0, 1.0, 1.0]), 0, 1.0, np.eye(len(detector.labels))[0])
        check_method(box_target(detector, probe), method, steps=steps, layer=layer)
        return
    if method not in DETECTION_METHODS:
        raise InvalidInputError(
            f"a detection is explained with {', '.join(detection_methods(detector))}, "
            f"not {method!r}"
        )
    if steps is not None or layer is not None:
        raise InvalidInputError("steps and layer apply to the gradient methods only")


def box_target(detector: Detector, target: Target) -> CallableModel:
    """A two-class model of uint8 images at the detector's size: P(``target``) is the
    similarity of the image's detections to the target, the second class its complement
    (differentiable, :func:`box_forward`, where the detector has a torch forward)."""
    w, h = detector.input_size
    name = detector.labels[target.label]
    meta = ModelMetadata(
        labels=[f"box {target.index} ({name})", "not that box"],
        input=InputSpec(width=w, height=h, layout="NHWC", dtype="uint8", scale=1.0),
        output="probabilities",
        problem_type="binary",
        name=detector.name,
    )
    k = len(detector.labels)

    def fn(x: np.ndarray) -> np.ndarray:
        # the engine hands uint8 images (the input is uint8); rounding them would go through
        # float16, at about 20 ms a 640×480 image
        images = x if x.dtype == np.uint8 else np.clip(np.rint(x), 0, 255).astype(np.uint8)
        p = np.array([similarity(target, d, k) for d in detector.detect(images)])
        return np.stack([p, 1.0 - p], axis=1)

    forward = detector.forward
    return BoxModel(
        fn,
        meta,
        name=detector.name,
        forward=None if forward is None else lambda: box_forward(forward, target, meta),
    )


@dataclass
class DetectionExplanation:
    """An explanation of one detection: the engine's :class:`Explanation` of its box target,
    the explained ``target`` and all ``detections`` of the image (``xyxy`` pixels of the
    photo), and the detector's labels."""

    explanation: Explanation
    target: Target
    detections: Detections
    labels: list[str]

    def to_dict(self, image_refs: Callable[[int, str], str] | None = None) -> dict[str, Any]:
        """The RESULT, with ``detection``: the explained box and every detection
        (``image_refs`` as :meth:`Explanation.to_dict`'s)."""
        out = self.explanation.to_dict(image_refs=image_refs)
        out["detection"] = {
            "box": _rounded(self.target.box),
            "index": self.target.index,
            "label": self.labels[self.target.label],
            "score": round(self.target.score, 6),
            "box_format": "xyxy",
            "detections": [
                {
                    "box": _rounded(self.detections.boxes[i]),
                    "label": self.labels[int(self.detections.labels[i])],
                    "score": round(float(self.detections.scores[i]), 6),
                }
                for i in range(len(self.detections))
            ],
        }
        return out

    def save(self, directory: str | Path) -> Path:
        """Write the panes, each with the explained box outlined (the ``labels`` pane as it
        is), and the RESULT with its ``detection`` field as ``result.json``; return the
        folder."""
        folder = self.explanation.save(directory)
        for (class_index, kind), _ in self.explanation.pane_keys():
            if kind != LABELS:
                outline_box(folder / self.explanation.file_name(class_index, kind), self.target.box)
        (folder / "result.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return folder


#: The colour of the explained box on the panes.
BOX_COLOUR = (255, 221, 0)


def outline_box(png: Path, box: np.ndarray) -> None:
    """Outline the ``xyxy`` ``box`` (the PNG's pixels) on the PNG file (:func:`outline_png`)."""
    png.write_bytes(outline_png(png.read_bytes(), box))


def outline_png(png: bytes, box: np.ndarray) -> bytes:
    """The PNG with the ``xyxy`` ``box`` (its pixels) outlined in :data:`BOX_COLOUR` over a
    dark edge, so that it shows on light and dark panes alike."""
    import io

    from PIL import Image, ImageDraw

    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    width = max(2, round(min(image.size) / 200))
    x0, y0, x1, y1 = (float(v) for v in box)
    draw = ImageDraw.Draw(image)
    draw.rectangle(
        (x0 - width, y0 - width, x1 + width - 1, y1 + width - 1), outline=(0, 0, 0), width=1
    )
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=width)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _rounded(box: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in box]


def explain_detection(
    image: ImageInput,
    detector: Detector,
    *,
    box: int | None = None,
    label: str | int | None = None,
    box_xyxy: Sequence[float] | None = None,
    method: str = "kernelshap",
    **settings: Any,
) -> DetectionExplanation:
    """Explain one detection of ``detector`` on ``image``: which regions made it see the box.

    Args:
        image: a path, encoded bytes, a PIL image or an RGB uint8 array, of any size.
        detector: the object detector (:class:`limner.models.detection.Detector`).
        box: the detection's number, in the detector's order (default: the best-scoring one).
        label: explain the best-scoring detection of this class (a label or its index).
        box_xyxy: explain this box instead, ``[x0, y0, x1, y1]`` in the photo's pixels, of
            class ``label`` (a box another detector found, say: every detector compared on it
            explains the same target); ``box`` is then only the number the RESULT reports.
        method: ``kernelshap`` (default), ``lime``, ``occlusion``, ``rise`` or ``drise``; for
            a detector with a torch forward (TorchScript, PyTorch, Hugging Face) also
            ``integrated-gradients``, ``xrai`` and (its layers hookable) ``gradcam``, on the
            same box score taken over the head's every candidate (:func:`box_forward`).
        settings: the engine's other settings (``samples``, ``segments``, ``baseline``,
            ``seed``, ...; see :func:`limner.explain`).
    """
    check_detection_method(
        detector, method, steps=settings.get("steps"), layer=settings.get("layer")
    )
    if "classes" in settings or "top_k" in settings:
        raise InvalidInputError("a detection is chosen with box= or label=, not classes or top_k")
    photo = decode_image(image)
    w, h = detector.input_size
    at_input = detector.detect(resize(photo, w, h)[None])[0]
    to_input = np.array([w / photo.shape[1], h / photo.shape[0]] * 2)
    if box_xyxy is not None:
        target = given_target(
            np.asarray(box_xyxy, dtype=np.float64) * to_input,
            _label_index(label, detector.labels),
            at_input,
            len(detector.labels),
            index=box or 0,
        )
    else:
        target = pick_target(
            at_input, len(detector.labels), box=box, label=_label_index(label, detector.labels)
        )
    exp = explain(photo, box_target(detector, target), method=method, classes=[0], **settings)
    # boxes found at the detector's input size, shown in the photo's pixels
    scale = np.array([photo.shape[1] / w, photo.shape[0] / h] * 2)
    found = replace(at_input, boxes=at_input.boxes * scale)
    explained = replace(target, box=target.box * scale)
    return DetectionExplanation(exp, explained, found, detector.labels)


def explain_box(
    image: ImageInput,
    detector: Detector,
    settings: dict[str, Any],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> DetectionExplanation:
    """Explain the box a stored job's ``settings`` name (:func:`explain_detection`): ``box``,
    its number, and ``target``, the transaction's box itself (``box`` corners in the photo's
    pixels and ``class_index``, so that every detector compared on it explains the same box),
    beside the engine's settings (a comparison's ``classes`` is the target's own and dropped)."""
    rest = dict(settings)
    box = int(rest.pop("box", 0))
    rest.pop("classes", None)
    target = rest.pop("target", None)
    return explain_detection(
        image,
        detector,
        box=box,
        box_xyxy=target["box"] if target else None,
        label=int(target["class_index"]) if target else None,
        progress=progress,
        **rest,
    )


def _label_index(label: str | int | None, labels: Sequence[str]) -> int | None:
    if label is None or isinstance(label, int):
        return label
    if label not in labels:
        raise InvalidInputError(
            f"label {label!r} is not one of the detector's: {', '.join(labels)}"
        )
    return labels.index(label)


def drise_map(
    image: np.ndarray,
    detector: Detector,
    target: Target,
    *,
    masks_count: int = 4000,
    cells: int = 16,
    keep: float = 0.5,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """D-RISE's saliency of ``target`` on ``image`` (uint8, at the detector's input size):
    ``masks_count`` random masks (``cells``×``cells`` cells, each kept with probability
    ``keep``, upsampled and shifted as RISE's), each masked image's similarity to the target
    weighting its mask; (H, W) float32, the weighted masks' sum over ``masks_count × keep``."""
    h, w = image.shape[:2]
    if (w, h) != tuple(detector.input_size):
        raise InvalidInputError(f"drise_map takes the image at the detector's size {w}×{h}")
    rng = np.random.default_rng(seed)
    design = mask_design(rng, masks_count, cells, keep, h, w)
    k = len(detector.labels)
    total = np.zeros((h, w), np.float64)
    photo = image.astype(np.float32)
    for start in range(0, masks_count, batch_size):
        m = masks(design, start, min(masks_count, start + batch_size), h, w)
        masked = np.clip(np.rint(photo[None] * m[..., None]), 0, 255).astype(np.uint8)
        s = np.array([similarity(target, d, k) for d in detector.detect(masked)])
        total += np.tensordot(s, m, axes=1)
    return (total / (masks_count * keep)).astype(np.float32)
