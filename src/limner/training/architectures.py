"""The networks ``limner train`` builds.

* ``efficientnet-lite0`` (default): the built-in ImageNet backbone, frozen, with a trained
  linear head on its globally pooled 1280 features. The backbone's features are computed once
  (by ONNX Runtime, fast on a CPU) and only the head is trained; the exported network is the
  whole of it, backbone and head.
* ``small-cnn``: four convolution blocks trained from scratch on the images.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from limner.models.metadata import InputSpec
from limner.models.zoo import efficientnet_lite0_metadata, efficientnet_lite0_module

EFFICIENTNET_LITE0 = "efficientnet-lite0"
SMALL_CNN = "small-cnn"
ARCHITECTURES = (EFFICIENTNET_LITE0, SMALL_CNN)

FEATURES = 1280


class PooledFeatures(nn.Module):
    """EfficientNet-Lite0 convolutional features, averaged over the spatial grid: ``[N, 1280]``."""

    def __init__(self, backbone: Any) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x).mean(dim=(2, 3))


class FeatureClassifier(nn.Module):
    """A frozen feature extractor followed by a trained head: logits ``[N, C]``."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def linear_head(num_classes: int, dropout: float = 0.2) -> nn.Module:
    """Dropout and one linear layer on the pooled features."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURES, num_classes))


def _block(cin: int, cout: int, pool: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers


class SmallCNN(nn.Module):
    """Four 3×3 convolution blocks (16, 32, 64, 64 channels), global average pool, linear."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_block(3, 16), *_block(16, 32), *_block(32, 64), *_block(64, 64, pool=False)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3), keepdim=True))


def efficientnet_input(size: int) -> InputSpec:
    """The backbone's preprocessing ((pixel - 127) / 128, NCHW) at ``size``×``size``."""
    spec = efficientnet_lite0_metadata().input
    return InputSpec(
        width=size,
        height=size,
        layout=spec.layout,
        dtype=spec.dtype,
        scale=spec.scale,
        mean=spec.mean,
        std=spec.std,
    )


def small_cnn_input(size: int) -> InputSpec:
    """Pixels scaled to [-1, 1], NCHW, at ``size``×``size``."""
    return InputSpec(
        width=size, height=size, layout="NCHW", scale=1.0 / 255.0, mean=(0.5,) * 3, std=(0.5,) * 3
    )


def export_onnx(module: nn.Module, size: int, path: str | Path, output: str = "logits") -> None:
    """Export ``module`` (input ``[N, 3, size, size]``, any N) to ONNX (TorchScript exporter)."""
    from limner.models.zoo import export_onnx as export

    export(module, (1, 3, size, size), path, output=output)


@dataclass
class FrozenFeatures:
    """Computes the frozen backbone's pooled features with ONNX Runtime."""

    module: PooledFeatures
    size: int
    batch_size: int = 32

    def __call__(
        self, x: np.ndarray, progress: Callable[[int, int], Any] | None = None
    ) -> np.ndarray:
        """Features ``[N, 1280]`` of a preprocessed batch ``[N, 3, S, S]``."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        fd, tmp = tempfile.mkstemp(suffix=".onnx")
        os.close(fd)
        try:
            export_onnx(self.module, self.size, tmp, output="features")
            session = ort.InferenceSession(tmp, opts, providers=["CPUExecutionProvider"])
        finally:
            os.unlink(tmp)
        out = []
        for start in range(0, len(x), self.batch_size):
            out.append(session.run(None, {"input": x[start : start + self.batch_size]})[0])
            if progress is not None:
                progress(min(len(x), start + self.batch_size), len(x))
        return np.concatenate(out).astype(np.float32)


def frozen_backbone(size: int) -> FrozenFeatures:
    """The pretrained EfficientNet-Lite0 feature extractor, frozen, at ``size``×``size``."""
    features = PooledFeatures(efficientnet_lite0_module())
    for p in features.parameters():
        p.requires_grad_(False)
    return FrozenFeatures(features.eval(), size)
