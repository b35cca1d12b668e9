"""The gradient methods on detectors with a torch forward (TorchScript, a PyTorch module, a
Hugging Face object-detection directory), and the one-line refusals of those without one or of
a method they cannot take."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_onnx_detector import SIZE, GridDetector, meta

from detector_helpers import tiny_yolos
from limner.datasets.scenes import mask_box, scene
from limner.errors import InvalidInputError
from limner.explain.detection import check_detection_method, detection_methods, explain_detection
from limner.models.detection import iou
from limner.models.detectors import load_detector
from limner.models.onnx_detector import load_onnx_detector

RAW = {"layout": "raw", "box_format": "cxcywh"}
NMS = {"box_format": "xywh", "normalized": True}


def _traced(tmp_path: Path, raw: bool) -> Path:
    pt = tmp_path / f"grid-{raw}.pt"
    torch.jit.trace(GridDetector(raw).eval(), torch.zeros(1, 3, SIZE, SIZE)).save(str(pt))
    return pt


@pytest.mark.parametrize("raw", [True, False], ids=["raw-head", "own-nms"])
def test_integrated_gradients_explain_a_torchscript_detectors_box(tmp_path: Path, raw: bool):
    """On a TorchScript detector, Integrated Gradients of the box score put the most weight on
    a region inside the explained object and add up to the score; the RESULT names the box."""
    detector = load_detector(str(_traced(tmp_path, raw)), meta(**(RAW if raw else NMS)))
    img, objects = scene(4, SIZE, SIZE)
    found = explain_detection(img, detector, method="integrated-gradients", segments=16)
    result = found.to_dict()
    assert result["method"] == "integrated-gradients"
    assert result["detection"]["box"] == [round(float(v), 2) for v in found.target.box]
    weights = found.explanation.classes[0].weights
    assert np.isfinite(weights).all() and weights.max() > 0
    assert found.explanation.completeness[0] <= 0.05
    labels = found.explanation.regions.labels
    top = labels == int(np.argmax(weights))
    # the explained box's object: the one whose own box it overlaps most
    best = max(objects, key=lambda o: float(iou(mask_box(o[1]), found.target.box[None])[0]))
    assert (top & best[1]).any()


def test_what_each_detector_can_be_explained_with_is_said_in_one_line(tmp_path: Path):
    scripted = load_detector(str(_traced(tmp_path, True)), meta(**RAW))
    assert "integrated-gradients" in detection_methods(scripted)
    assert "gradcam" not in detection_methods(scripted)  # TorchScript layers cannot be hooked
    with pytest.raises(InvalidInputError, match="gradcam hooks"):
        check_detection_method(scripted, "gradcam")
    with pytest.raises(InvalidInputError, match="steps must be between"):
        check_detection_method(scripted, "integrated-gradients", steps=1)
    with pytest.raises(InvalidInputError, match="gradient methods only"):
        check_detection_method(scripted, "kernelshap", steps=32)
    with pytest.raises(InvalidInputError, match="not 'sharpley'"):
        check_detection_method(scripted, "sharpley")

    onnx = tmp_path / "grid.onnx"
    torch.onnx.export(
        GridDetector(True).eval(), torch.zeros(1, 3, SIZE, SIZE), str(onnx),
        input_names=["images"], output_names=["output0"], dynamo=False,
    )  # fmt: skip
    black_box = load_onnx_detector(onnx, meta(**RAW))
    assert detection_methods(black_box) == ("kernelshap", "lime", "occlusion", "rise", "drise")
    with pytest.raises(
        InvalidInputError, match=r"integrated-gradients needs gradients.*kernelshap"
    ):
        explain_detection(scene(4, SIZE, SIZE)[0], black_box, method="integrated-gradients")


def test_a_hugging_face_detectors_box_is_explained_with_integrated_gradients(tmp_path: Path):
    pytest.importorskip("transformers")
    folder = tmp_path / "yolos"
    tiny_yolos(folder)
    from limner.models.detectors import detector_metadata_for

    detector = load_detector(str(folder), detector_metadata_for(str(folder)))
    assert "integrated-gradients" in detection_methods(detector)
    found = explain_detection(
        scene(7)[0][:64, :64], detector, method="integrated-gradients", segments=9, steps=32
    )
    weights = found.explanation.classes[0].weights
    assert np.isfinite(weights).all() and np.abs(weights).sum() > 0
    assert found.to_dict()["detection"]["label"] == "square"


def test_explain_box_takes_a_gradient_method_for_a_torchscript_detector(tmp_path: Path):
    import json

    from PIL import Image
    from test_onnx_detector import _cli

    pt = _traced(tmp_path, True)
    (tmp_path / "det.json").write_text(json.dumps(meta(**RAW)))
    Image.fromarray(scene(4, SIZE, SIZE)[0]).save(tmp_path / "scene.png")
    base = [str(tmp_path / "scene.png"), "--detector", str(pt), "--metadata"]
    done = _cli(*base, str(tmp_path / "det.json"), "--method", "integrated-gradients",
                "--steps", "32", "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "scene-box0" / "result.json").read_text())
    assert result["method"] == "integrated-gradients" and result["detection"]["index"] == 0
    refused = _cli(*base, str(tmp_path / "det.json"), "--method", "gradcam")
    assert refused.returncode == 2 and "gradcam hooks" in refused.stderr, refused.stderr
