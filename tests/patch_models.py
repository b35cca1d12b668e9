"""The known-patch models and image shared by the engine, gradient, XRAI, CLI and RESULT-docs
tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from limner.models import CallableModel, InputSpec, ModelMetadata
from limner.models.pytorch import TorchModel


def brightness_model(size: int = 64) -> CallableModel:
    """P(bright) = mean brightness of the top-left quarter of the size×size input, in [0, 1]."""
    meta = ModelMetadata(
        labels=["dark", "bright"],
        input=InputSpec(width=size, height=size, layout="NHWC", dtype="uint8", scale=1.0),
        output="probabilities",
        problem_type="binary",
        name="top-left-brightness",
    )
    half = size // 2

    def fn(x: np.ndarray) -> np.ndarray:
        p = x[:, :half, :half, :].astype(np.float64).mean(axis=(1, 2, 3)) / 255.0
        return np.stack([1 - p, p], axis=1)

    return CallableModel(fn, meta)


def patch_image() -> np.ndarray:
    """A 128×128 noisy image whose top-left quarter is a white patch."""
    rng = np.random.default_rng(3)
    img = rng.integers(40, 200, size=(128, 128, 3)).astype(np.uint8)
    img[:64, :64] = 255  # the bright patch in the top-left quarter
    return img


class Brightness(nn.Module):
    """P(bright) = mean brightness of the top-left quarter of the 64×64 input, as a torch model:
    a 1×1 convolution gives each pixel's brightness, the quarter's mean is the probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / (3 * 255.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.conv(x)[:, 0, :32, :32].mean(dim=(1, 2))
        return torch.stack([1 - p, p], dim=1)


def brightness_meta() -> ModelMetadata:
    """The metadata of :class:`Brightness` (NCHW float input in 0..255)."""
    return ModelMetadata(
        labels=["dark", "bright"],
        input=InputSpec(width=64, height=64, layout="NCHW", scale=1.0),
        output="probabilities",
        problem_type="binary",
        name="top-left-brightness",
    )


def torch_brightness() -> TorchModel:
    """:class:`Brightness` as a limner torch model (it has gradients)."""
    return TorchModel(Brightness(), brightness_meta())
