"""An object detector's scoring: its detections of each image, as transactions keep them.

A detector's deployment is scored like a classifier's, but what it finds is a list of boxes per
image. Each box is kept as ``{"index", "box": [x0, y0, x1, y1] (the photo's pixels), "label",
"class_index", "score"}``, best first (the detector's order, which ``box`` of an explanation
request counts in). The transaction's ``label`` is the best box's (empty when there is none),
and its per-class "probabilities" are each class's best box score (0 where none was found), so
that the filters and lists that read them work unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from limner.imaging import resize
from limner.jobs.workers import WorkerModel
from limner.models import Model


def worker_detector(model: Model) -> WorkerModel | None:
    """``model`` when it is an object detector held by its worker, else ``None``."""
    return model if isinstance(model, WorkerModel) and model.is_detector else None


def detect_photos(model: WorkerModel, photos: list[np.ndarray]) -> list[list[dict[str, Any]]]:
    """Each photo's detections (boxes in its own pixels), best first."""
    w, h = model.input_size
    batch = np.stack([resize(p, w, h) for p in photos])
    found = model.detect(batch)
    labels = model.labels
    out = []
    for photo, (boxes, scores, classes, *_) in zip(photos, found, strict=True):
        scale = np.array([photo.shape[1] / w, photo.shape[0] / h] * 2)
        out.append(
            [
                {
                    "index": i,
                    "box": [round(float(v), 2) for v in np.asarray(boxes[i]) * scale],
                    "label": labels[int(classes[i])],
                    "class_index": int(classes[i]),
                    "score": round(float(scores[i]), 6),
                }
                for i in range(len(scores))
            ]
        )
    return out


def class_scores(detections: list[dict[str, Any]], num_classes: int) -> np.ndarray:
    """Each class's best box score among ``detections`` (0 where none)."""
    p = np.zeros(num_classes, dtype=np.float32)
    for d in detections:
        p[d["class_index"]] = max(p[d["class_index"]], d["score"])
    return p


def best_box(detections: list[dict[str, Any]]) -> tuple[str, int, float]:
    """The transaction's label, class index and score: its best box's (``""``, -1, 0 when the
    detector found nothing)."""
    if not detections:
        return "", -1, 0.0
    best = max(detections, key=lambda d: d["score"])
    return str(best["label"]), int(best["class_index"]), float(best["score"])
