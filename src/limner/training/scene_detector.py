"""A small object detector that limner trains on its generated scenes, in about 30 s on 2 cores.

The network (:class:`SceneNet`) is a CenterNet-style fully convolutional detector: on a grid of
stride 4 it predicts, per cell and class, how likely an object's centre is there, and per cell
the object's width and height. Its single output is YOLO's raw head, ``(N, 4 + C, cells)``:
each cell's box as ``cxcywh`` pixels and its class scores, which limner's ONNX detector reads
with its own NMS (``"layout": "raw"``). Trained on :func:`limner.datasets.scenes.scene`, whose
masks give exact boxes, it is a learned detector to test explanations against (the pointing
game, and the same game on the network with its weights randomized).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from limner.datasets.scenes import SCENE_LABELS, mask_box, scene
from limner.training.architectures import export_onnx

#: Grid stride of the network's output (pixels per cell).
STRIDE = 4


class SceneNet(nn.Module):
    """The detector: five 3×3 convolutions (stride 4 overall), a centre heatmap per class and
    a size per cell; input NCHW pixels scaled to 0..1."""

    def __init__(self, classes: int = len(SCENE_LABELS), width: int = 24) -> None:
        super().__init__()
        c = width
        self.body = nn.Sequential(
            nn.Conv2d(3, c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.ReLU(),
        )
        self.heat = nn.Conv2d(2 * c, classes, 1)
        self.size = nn.Conv2d(2 * c, 2, 1)
        assert self.heat.bias is not None
        nn.init.constant_(self.heat.bias, -3.0)  # most cells hold no centre

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centre logits ``(N, C, h, w)`` and sizes ``(N, 2, h, w)`` (pixels)."""
        f = self.body(x)
        return self.heat(f), torch.exp(self.size(f)) * 16.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """YOLO's raw head ``(N, 4 + C, h·w)``: ``cxcywh`` pixels, then class scores."""
        heat, size = self.maps(x)
        n, _, h, w = heat.shape
        ys = (torch.arange(h, dtype=x.dtype) + 0.5) * STRIDE
        xs = (torch.arange(w, dtype=x.dtype) + 0.5) * STRIDE
        cy = ys.view(1, 1, h, 1).expand(n, 1, h, w)
        cx = xs.view(1, 1, 1, w).expand(n, 1, h, w)
        raw = torch.cat([cx, cy, size, torch.sigmoid(heat)], dim=1)
        return raw.flatten(2)


def targets(
    objects: list[tuple[int, np.ndarray]], size: int, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of one scene: a Gaussian centre heatmap per class ``(C, h, w)``, the
    boxes' sizes ``(2, h, w)`` and where a size is known ``(h, w)``."""
    cells = size // STRIDE
    heat = np.zeros((classes, cells, cells), np.float32)
    wh = np.zeros((2, cells, cells), np.float32)
    known = np.zeros((cells, cells), np.float32)
    yy, xx = np.mgrid[:cells, :cells]
    for cls, mask in objects:
        x0, y0, x1, y1 = mask_box(mask)
        cx, cy = (x0 + x1) / 2 / STRIDE - 0.5, (y0 + y1) / 2 / STRIDE - 0.5
        sigma = max(0.8, (x1 - x0) / STRIDE / 6)
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        heat[cls] = np.maximum(heat[cls], g)
        j, i = int(np.rint(cx)), int(np.rint(cy))
        for di in (-1, 0, 1):  # the centre cell and its neighbours regress the size
            for dj in (-1, 0, 1):
                a, b = i + di, j + dj
                if 0 <= a < cells and 0 <= b < cells:
                    wh[:, a, b] = (x1 - x0, y1 - y0)
                    known[a, b] = 1.0
    return heat, wh, known


def train_scene_detector(
    *,
    scenes: int = 1200,
    epochs: int = 10,
    size: int = 96,
    seed: int = 0,
    progress: Callable[[int, int], Any] | None = None,
) -> SceneNet:
    """Train :class:`SceneNet` on ``scenes`` generated scenes (seeds 0..scenes-1; keep other
    seeds for testing) with the focal loss of CenterNet on the centres and an L1 loss on the
    sizes; ``progress(done, total)`` after each batch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    classes = len(SCENE_LABELS)
    images, heats, sizes, knowns = [], [], [], []
    for s in range(scenes):
        img, objects = scene(s, size, size)
        heat, box_size, known = targets(objects, size, classes)
        images.append(img)
        heats.append(heat)
        sizes.append(box_size)
        knowns.append(known)
    x_all = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    h_all = torch.from_numpy(np.stack(heats))
    wh_all = torch.from_numpy(np.stack(sizes))
    k_all = torch.from_numpy(np.stack(knowns))
    net = SceneNet(classes)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    batch = 32
    steps = epochs * ((scenes + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    done = 0
    net.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(scenes))
        for start in range(0, scenes, batch):
            idx = order[start : start + batch]
            heat_logit, wh = net.maps(x_all[idx])
            loss = _focal(heat_logit, h_all[idx]) + 0.1 * _size_loss(wh, wh_all[idx], k_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if progress is not None:
                progress(done, steps)
    net.eval()
    return net


def _focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, per object."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.ge(0.99).float()
    neg = 1.0 - pos
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def _size_loss(pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    mask = known.unsqueeze(1)
    return (torch.abs(pred - target) * mask).sum() / mask.sum().clamp(min=1.0)


def randomized(net: SceneNet, seed: int = 0) -> SceneNet:
    """A copy of ``net`` with every weight drawn afresh (the randomization sanity check)."""
    torch.manual_seed(seed)
    out = copy.deepcopy(net)
    for module in out.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    out.eval()
    return out


def save_onnx_detector(
    net: SceneNet, folder: str | Path, *, size: int = 96, score_threshold: float = 0.2
) -> Path:
    """Write ``net`` as an ONNX detector folder (``model.onnx`` and its ``limner-model.json``,
    raw head, ``cxcywh`` pixels); return the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(net, size, out / "model.onnx", output="raw")
    meta = {**scene_detector_metadata(size, score_threshold), "artifact": "model.onnx"}
    (out / "limner-model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def scene_detector_metadata(size: int = 96, score_threshold: float = 0.2) -> dict[str, Any]:
    """The ``limner-model.json`` of :class:`SceneNet` (its raw head, ``cxcywh`` pixels), for
    its ONNX export or the module itself (:func:`limner.models.detector_formats.torch_detector`)."""
    return {
        "name": "scene-detector",
        "labels": SCENE_LABELS,
        "problem_type": "detection",
        "input": {"width": size, "height": size, "layout": "NCHW", "scale": 1 / 255},
        "detection": {
            "layout": "raw",
            "raw": "raw",
            "box_format": "cxcywh",
            "score_threshold": score_threshold,
            "iou_threshold": 0.3,
            "max_detections": 20,
        },
    }
