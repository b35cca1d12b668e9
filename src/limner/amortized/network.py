"""The explainer network: an image in, a per-pixel attribution map per class out.

A small fully convolutional encoder (two stride-2 stages, then dilated convolutions for
context) reads the image and its baseline (what a switched-off region becomes: the Shapley
values are about their difference), both scaled to 0..1 and brought down to at most
:data:`WORK_SIDE` pixels on the longer side, and predicts one map per class at a quarter of
that resolution, spread over the input's pixels. Summed over
a region, a class's map is that region's Shapley value for the class (:mod:`.training` teaches
it so); the same map serves any segmentation.
"""

from __future__ import annotations

import torch
from torch import nn

#: Channels of the encoder's layers (the artifact's JSON records it).
DEFAULT_WIDTH = 32
#: The longest side the network works at.
WORK_SIDE = 48


class ExplainerNet(nn.Module):
    """``(N, 6, H, W)`` image and baseline in 0..1 → ``(N, C, H, W)`` attribution maps."""

    def __init__(self, classes: int, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        c = width
        self.body = nn.Sequential(
            nn.Conv2d(6, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=4, dilation=4),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(2 * c, classes, 1)
        nn.init.zeros_(self.head.weight)  # it starts from equal shares of f(x) − f(b)
        assert self.head.bias is not None
        nn.init.zeros_(self.head.bias)
        features = 4 * c  # the feature maps' mean and spread, per channel
        #: Where the training images' features lie (their mean and shrunk precision), so that
        #: :meth:`distance` can tell an image unlike them (set after training; saved with the
        #: weights).
        self.register_buffer("familiar_mean", torch.zeros(features))
        self.register_buffer("familiar_precision", torch.eye(features))

    def _small(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        scale = WORK_SIDE / max(h, w)
        if scale < 1:
            size = (max(8, round(h * scale)), max(8, round(w * scale)))
            x = nn.functional.interpolate(x, size=size, mode="area")
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 4·width)``: the mean and standard deviation of each of the encoder's
        channels over the image."""
        f = self.body(self._small(x))
        return torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], dim=1)

    def familiarize(self, features: torch.Tensor, shrink: float = 0.1) -> None:
        """Remember where the training images' ``features`` lie: their mean and the inverse of
        their covariance, shrunk towards its average variance (a stable inverse)."""
        mean = features.mean(dim=0)
        centred = features - mean
        cov = centred.T @ centred / max(len(features) - 1, 1)
        scale = torch.trace(cov) / cov.shape[0]
        shrunk = (1 - shrink) * cov + shrink * scale * torch.eye(cov.shape[0])
        self._buffer("familiar_mean").copy_(mean)
        self._buffer("familiar_precision").copy_(torch.linalg.inv(shrunk))

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,)``: each image's Mahalanobis distance from the training images' features."""
        d = self.features(x) - self._buffer("familiar_mean")
        quadratic = ((d @ self._buffer("familiar_precision")) * d).sum(dim=1)
        return torch.sqrt(torch.clamp(quadratic, min=0))

    def _buffer(self, name: str) -> torch.Tensor:
        buffer = self.get_buffer(name)
        assert isinstance(buffer, torch.Tensor)
        return buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The maps at the input's size; each low-resolution cell's value is spread over the
        pixels it covers (so a region's sum does not depend on the resolution)."""
        h, w = x.shape[2:]
        low = self.head(self.body(self._small(x)))
        cells = low.shape[2] * low.shape[3]
        up = nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        return up * (cells / (h * w))
