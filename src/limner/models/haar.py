"""The built-in object detector ``opencv-faces``: OpenCV's pretrained frontal-face cascade.

The cascade (Lienhart's frontal-face Haar cascade, trained on face photographs) ships inside
the ``opencv-python-headless`` package, so it runs offline with nothing downloaded. It is a
real pretrained detector that limner can explain end to end: ``limner.explain_detection`` on
scikit-image's astronaut photo says which regions made it see her face. It finds upright,
frontal faces of at least a tenth of its 320×320 input; a face turned away or in profile is
not found. A detection's score is the cascade's last-stage margin squashed into 0..1
(a logistic), so that D-RISE's similarity can weigh it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from limner.errors import ModelError
from limner.models.detection import Detector

OPENCV_FACES = "opencv-faces"
#: The detector's input side, in pixels (photos are resized to it).
SIDE = 320
#: The cascade file inside ``cv2.data.haarcascades``.
CASCADE = "haarcascade_frontalface_default.xml"


def opencv_faces_metadata() -> dict[str, Any]:
    """The detector's ``limner-model.json`` (what a deployment of it records)."""
    return {
        "labels": ["face"],
        "problem_type": "detection",
        "name": OPENCV_FACES,
        "input": {"width": SIDE, "height": SIDE, "layout": "NHWC", "dtype": "uint8", "scale": 1},
        "detection": {"layout": "nms", "box_format": "xywh", "normalized": False},
    }


def opencv_faces() -> Detector:
    """The built-in face detector (one class, ``face``), at 320×320."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelError(
            f"{OPENCV_FACES} needs the package opencv-python-headless (pip install limner "
            "installs it)"
        ) from exc
    if not hasattr(cv2, "CascadeClassifier"):  # OpenCV 5 left the cascades out
        raise ModelError(
            f"{OPENCV_FACES} needs OpenCV 4 (opencv-python-headless<5), which ships the Haar "
            f"cascades; the installed OpenCV is {getattr(cv2, '__version__', 'unknown')}"
        )
    cv2.setNumThreads(1)  # one image at a time per call; the service runs calls side by side
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)  # type: ignore[attr-defined]
    if cascade.empty():  # pragma: no cover - the file ships with the package
        raise ModelError(f"{OPENCV_FACES}: OpenCV's {CASCADE} could not be read")

    def detect(images: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        found: list[tuple[np.ndarray, ...]] = []
        for image in images:
            gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
            boxes, _, weights = cascade.detectMultiScale3(
                gray,
                scaleFactor=1.2,
                minNeighbors=3,
                minSize=(SIDE // 10, SIDE // 10),
                outputRejectLevels=True,
            )
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            margin = np.asarray(weights, dtype=np.float64).reshape(-1)
            scores = 1.0 / (1.0 + np.exp(-margin))
            order = np.argsort(-scores, kind="stable")
            found.append((b[order], scores[order], np.zeros(len(b), dtype=np.int64)))
        return found

    return Detector(
        detect,
        ["face"],
        (SIDE, SIDE),
        box_format="xywh",
        name=OPENCV_FACES,
        metadata=opencv_faces_metadata(),
    )
