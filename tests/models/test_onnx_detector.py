"""ONNX detectors: a YOLO-style raw head decoded with limner's NMS, a graph that outputs its own
boxes, the metadata's checks, and ``limner explain-box`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from limner.datasets.scenes import SCENE_LABELS, scene
from limner.errors import InvalidInputError
from limner.explain.detection import BOX_COLOUR
from limner.models.onnx_detector import load_onnx_detector

SIZE, CELL = 96, 12
G = SIZE // CELL


class GridDetector(nn.Module):
    """A detector of the generated scenes' objects as a network: each 12-pixel cell scores how
    red and how blue it is and proposes a 24-pixel box around its centre."""

    def __init__(self, raw: bool) -> None:
        super().__init__()
        self.raw = raw
        centres = (torch.arange(G, dtype=torch.float32) + 0.5) * CELL
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cx", cx.reshape(-1))
        self.register_buffer("cy", cy.reshape(-1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        strength = torch.stack([r - torch.maximum(g, b), b - torch.maximum(r, g)], dim=1)
        cells = nn.functional.avg_pool2d(strength, CELL).flatten(2)  # (N, 2, G*G)
        scores = torch.sigmoid((cells - 0.3) * 20)
        n = x.shape[0]
        side = torch.full_like(self.cx, 24.0)
        boxes = torch.stack([self.cx, self.cy, side, side], dim=0).expand(n, 4, G * G)
        if self.raw:
            return (torch.cat([boxes, scores], dim=1),)  # (N, 4 + 2, G*G), cxcywh pixels
        best, labels = scores.max(dim=1)
        xywh = torch.stack([self.cx - 12, self.cy - 12, side, side], dim=1) / SIZE
        return xywh.expand(n, G * G, 4), best, labels  # xywh normalized, as a graph with NMS


def meta(**detection: object) -> dict:
    return {
        "labels": SCENE_LABELS,
        "problem_type": "detection",
        "input": {"width": SIZE, "height": SIZE, "layout": "NCHW", "scale": 1 / 255},
        "detection": detection,
    }


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("detectors")
    files = {}
    for name, raw, outputs in (
        ("raw", True, ["output0"]),
        ("nms", False, ["boxes", "scores", "labels"]),
    ):
        path = d / f"{name}.onnx"
        torch.onnx.export(
            GridDetector(raw), torch.zeros(1, 3, SIZE, SIZE), str(path),
            input_names=["images"], output_names=outputs, dynamo=False,
        )  # fmt: skip
        files[name] = path
    return files


def _on_object(box: np.ndarray, label: int, objects: list[tuple[int, np.ndarray]]) -> bool:
    """Whether the box's middle half covers part of an object of its class."""
    x0, y0, x1, y1 = (int(np.rint(v)) for v in box)
    qx, qy = (x1 - x0) // 4, (y1 - y0) // 4
    return any(
        c == label and m[max(y0 + qy, 0) : y1 - qy, max(x0 + qx, 0) : x1 - qx].any()
        for c, m in objects
    )


def test_a_raw_head_is_decoded_thresholded_and_suppressed(onnx_files: dict[str, Path]):
    img, objects = scene(2)
    loose = load_onnx_detector(onnx_files["raw"], meta(layout="raw", box_format="cxcywh"))
    found = loose.detect(img[None])[0]
    assert len(found) > 0 and found.class_scores is not None
    assert all(_on_object(found.boxes[i], found.labels[i], objects) for i in range(len(found)))
    assert np.all(np.diff(found.scores) <= 0)  # best first
    strict = load_onnx_detector(
        onnx_files["raw"], meta(layout="raw", box_format="cxcywh", iou_threshold=0.2)
    )
    # neighbouring cells' boxes overlap by IoU 1/3: kept at 0.5, suppressed at 0.2
    assert 0 < len(strict.detect(img[None])[0]) < len(found)


def test_a_graph_with_its_own_boxes_is_read_in_its_format(onnx_files: dict[str, Path]):
    img, _ = scene(2)
    det = load_onnx_detector(
        onnx_files["nms"], meta(layout="nms", box_format="xywh", normalized=True)
    )
    found = det.detect(img[None])[0]
    assert len(found) == G * G
    first = found.boxes[0]  # the top-left cell's box, back in xyxy pixels
    assert np.allclose(first, [-6, -6, 18, 18], atol=1e-4)


@pytest.mark.parametrize(
    ("detection", "says"),
    [
        ({"layout": "yolo"}, "detection.layout"),
        ({"box_format": "yxyx"}, "detection.box_format"),
        ({"iou_threshold": 2}, "detection.iou_threshold"),
        ({"anchors": 3}, "unknown detection field 'anchors'"),
        ({"layout": "raw", "raw": "nope"}, "has no output 'nope'"),
    ],
)
def test_bad_detection_metadata_is_one_line(
    onnx_files: dict[str, Path], detection: dict, says: str
):
    with pytest.raises(InvalidInputError) as err:
        load_onnx_detector(onnx_files["raw"], meta(**detection))
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_raw_head_of_other_classes_is_refused(onnx_files: dict[str, Path]):
    three = {**meta(layout="raw", box_format="cxcywh"), "labels": ["a", "b", "c"]}
    det = load_onnx_detector(onnx_files["raw"], three)
    with pytest.raises(InvalidInputError, match=r"\(1, 4 \+ 3, N\)"):
        det.detect(scene(0)[0][None])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "explain-box", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_explain_box_writes_the_panes_and_the_result(onnx_files: dict[str, Path], tmp_path: Path):
    img, objects = scene(2)
    Image.fromarray(img).save(tmp_path / "scene.png")
    (tmp_path / "det.json").write_text(json.dumps(meta(layout="raw", box_format="cxcywh")))
    done = _cli(
        str(tmp_path / "scene.png"), "--detector", str(onnx_files["raw"]),
        "--metadata", str(tmp_path / "det.json"), "--segments", "16",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "out" / "scene-box0"
    result = json.loads((folder / "result.json").read_text())
    det = result["detection"]
    assert det["index"] == 0 and det["label"] in SCENE_LABELS and len(det["detections"]) >= 1
    labels = np.asarray(Image.open(folder / result["explanations"][0]["images"]["labels"]))
    weights = {r["id"]: r["weight"] for r in result["explanations"][0]["regions"]}
    top = max(weights, key=lambda k: weights[k])
    assert any(((labels == top) & m).any() for _, m in objects)
    assert "box 0" in done.stdout
    # the panes outline the explained box; the region ids are left as they are
    x0, y0, x1, _ = (int(np.rint(v)) for v in det["box"])
    for kind in ("positive", "negative", "heatmap"):
        pane = np.asarray(Image.open(folder / result["explanations"][0]["images"][kind]))
        top_edge = pane[max(y0, 0), max(x0, 0) : min(x1, SIZE)]
        assert (top_edge == BOX_COLOUR).all(axis=1).mean() > 0.9, kind
    assert labels.max() < 16


def test_explain_box_errors_are_one_line(onnx_files: dict[str, Path], tmp_path: Path):
    img, _ = scene(2)
    Image.fromarray(img).save(tmp_path / "scene.png")
    (tmp_path / "det.json").write_text(json.dumps(meta(layout="raw", box_format="cxcywh")))
    base = [str(tmp_path / "scene.png"), "--detector", str(onnx_files["raw"])]
    for args, says in (
        ([*base, "--metadata", str(tmp_path / "det.json"), "--box", "99"], "boxes (0.."),
        (base, "not an object detector"),
        ([str(tmp_path / "scene.png"), "--detector", str(tmp_path / "none.onnx")], "no such file"),
        ([*base, "--metadata", str(tmp_path / "det.json"), "--method", "gradcam"], "gradcam"),
    ):
        done = _cli(*args)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], done.stderr
