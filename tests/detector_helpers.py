"""What tests of detectors share: the metadata of limner's own ``/v2`` face detector as a URL
model (raw uint8 pixels in, the ``detection_*`` tensors out), and a tiny Hugging Face
detector."""

from __future__ import annotations

from pathlib import Path
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


def tiny_yolos(folder: Path) -> Any:
    """A tiny YOLOS object detector (labels ``square``, ``disc``; 64×64 input) saved as a
    Hugging Face directory at ``folder`` (safetensors); the model. Its class bias favours
    ``square`` over "no object", so that every query is a candidate box."""
    import torch
    import transformers

    config = transformers.YolosConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        image_size=[64, 64], patch_size=16, num_detection_tokens=6,
        id2label={0: "square", 1: "disc"}, label2id={"square": 0, "disc": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.YolosForObjectDetection(config).eval()
    with torch.no_grad():
        model.class_labels_classifier.layers[-1].bias[:] = torch.tensor([8.0, 0.0, 0.0])
    model.save_pretrained(folder, safe_serialization=True)
    transformers.YolosImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return model
