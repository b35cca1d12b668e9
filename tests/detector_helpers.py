"""What tests of detectors share: the metadata of limner's own ``/v2`` face detector as a URL
model (raw uint8 pixels in, the ``detection_*`` tensors out)."""

from __future__ import annotations

from typing import Any


def remote_faces_metadata() -> dict[str, Any]:
    """The ``limner-model.json`` of ``…/v2/models/<opencv-faces deployment>``."""
    return {
        "labels": ["face"],
        "problem_type": "detection",
        "input": {"width": 320, "height": 320, "layout": "NHWC", "dtype": "uint8", "scale": 1},
        "detection": {
            "boxes": "detection_boxes",
            "scores": "detection_scores",
            "labels": "detection_classes",
        },
    }
