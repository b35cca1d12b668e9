"""Loading object detectors from model specs, as :func:`limner.load_model` loads classifiers.

A spec is a detector when it is the built-in ``opencv-faces``, a Hugging Face
object-detection directory, or when its metadata (given, or the ``limner-model.json`` beside the
model or in its folder) says ``problem_type: detection``. Detectors load from ONNX
(:mod:`limner.models.onnx_detector`), Keras, TorchScript, Hugging Face directories and Open
Inference URLs (:mod:`limner.models.detector_formats`).
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
    from limner.models.detector_formats import hf_detector_metadata, is_hf_detector

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
    if merged.get("problem_type") == "detection":
        return merged
    if is_hf_detector(path) and merged.get("problem_type") in (None, "detection"):
        return hf_detector_metadata(path, merged)
    return None


def load_detector(
    spec: str,
    metadata: dict[str, Any],
    *,
    name: str | None = None,
    client: Any = None,
    headers: dict[str, str] | None = None,
) -> Detector:
    """The detector ``spec`` described by ``metadata`` (from :func:`detector_metadata_for`):
    the built-in, an ONNX, Keras or TorchScript file (or a folder holding one), a Hugging Face
    directory, or an Open Inference URL (through ``client``, with ``headers``)."""
    from limner.models import detector_formats as formats

    if spec in BUILTIN_DETECTORS:
        return opencv_faces()
    if name and metadata.get("name") in (None, "", "model"):
        metadata = {**metadata, "name": name}
    if spec.startswith(("http://", "https://")):
        return formats.remote_detector(spec, metadata, client=client, headers=headers)
    if spec.startswith("grpc://"):
        raise InvalidInputError("object detectors are called over HTTP (http(s)://…/v2/models/…)")
    path = Path(spec)
    if path.is_dir() and formats.is_hf_detector(path):
        return formats.hf_detector(path, metadata)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in _LOADERS)
        if len(found) != 1:
            raise InvalidInputError(
                f"a detector's folder holds one model ({', '.join(_LOADERS)}) and its "
                f"{METADATA_FILE}; found {len(found)}"
            )
        path = found[0]
    kind = _LOADERS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"object detectors load from {', '.join(_LOADERS)} files (with their "
            f"{METADATA_FILE}), Hugging Face object-detection directories, Open Inference URLs, "
            f"or are the built-in {', '.join(BUILTIN_DETECTORS)}"
        )
    if kind == "onnx":
        from limner.models.onnx_detector import load_onnx_detector

        return load_onnx_detector(path, metadata)
    if kind == "keras":
        return formats.keras_detector(path, metadata)
    return formats.torchscript_detector(path, metadata)


#: File suffixes of detectors, and their format.
_LOADERS = {".onnx": "onnx", ".keras": "keras", ".pt": "torchscript", ".pth": "torchscript"}


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
