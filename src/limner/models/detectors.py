"""Loading object detectors from model specs, as :func:`limner.load_model` loads classifiers.

A spec is a detector when it is the built-in ``opencv-faces``, or when its metadata (given, or
the ``limner-model.json`` beside the model or in its folder) says ``problem_type: detection``.
Detectors load from ONNX (:mod:`limner.models.onnx_detector`); other formats are refused with
a message that says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from limner.errors import InvalidInputError
from limner.models.detection import Detections, Detector
from limner.models.haar import OPENCV_FACES, opencv_faces, opencv_faces_metadata
from limner.models.metadata import METADATA_FILE

#: The built-in detectors.
BUILTIN_DETECTORS = (OPENCV_FACES,)


def detector_metadata_for(
    spec: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The detector metadata of ``spec`` (with ``metadata`` over what lies beside it), or
    ``None`` when ``spec`` is not a detector."""
    if spec in BUILTIN_DETECTORS:
        return opencv_faces_metadata()
    given = dict(metadata or {})
    if spec.startswith(("http://", "https://", "grpc://")):
        return given if given.get("problem_type") == "detection" else None
    path = Path(spec)
    beside = path / METADATA_FILE if path.is_dir() else path.parent / METADATA_FILE
    found: dict[str, Any] = {}
    if beside.is_file():
        try:
            found = json.loads(beside.read_text())
        except (OSError, ValueError):
            found = {}
    merged = {**found, **given} if isinstance(found, dict) else given
    return merged if merged.get("problem_type") == "detection" else None


def load_detector(spec: str, metadata: dict[str, Any], *, name: str | None = None) -> Detector:
    """The detector ``spec`` described by ``metadata`` (from :func:`detector_metadata_for`)."""
    if spec in BUILTIN_DETECTORS:
        return opencv_faces()
    path = Path(spec)
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            raise InvalidInputError(
                f"a detector's folder holds one .onnx model and its {METADATA_FILE}; "
                f"found {len(found)} .onnx files"
            )
        path = found[0]
    if path.suffix.lower() != ".onnx":
        raise InvalidInputError(
            f"object detectors load from ONNX (a .onnx file with its {METADATA_FILE}) or are the "
            f"built-in {', '.join(BUILTIN_DETECTORS)}; {path.suffix or 'this format'} is for "
            "classifiers"
        )
    from limner.models.onnx_detector import load_onnx_detector

    if name and metadata.get("name") in (None, "", "model"):
        metadata = {**metadata, "name": name}
    return load_onnx_detector(path, metadata)


def verify_detector(detector: Detector) -> None:
    """Run the detector on two synthetic images (noise and flat grey): a bad output (NaN boxes,
    shapes that do not match, class indices outside its labels, boxes that do not fit the
    declared format) is an :class:`~limner.errors.InvalidInputError` naming it."""
    w, h = detector.input_size
    rng = np.random.default_rng(0)
    images = np.stack(
        [rng.integers(0, 256, (h, w, 3), dtype=np.uint8), np.full((h, w, 3), 128, np.uint8)]
    )
    detector.detect(images)


def as_arrays(found: list[Detections]) -> list[tuple[np.ndarray, ...]]:
    """Detections as plain arrays (boxes, scores, labels and, where given, class scores), the
    form a :class:`Detector`'s function returns and that crosses a process boundary."""
    out: list[tuple[np.ndarray, ...]] = []
    for d in found:
        arrays = (d.boxes, d.scores, d.labels)
        out.append(arrays if d.class_scores is None else (*arrays, d.class_scores))
    return out
