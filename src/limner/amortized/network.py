"""The explainer network: an image in, a per-pixel attribution map per class out.

A small fully convolutional encoder (two stride-2 stages, then dilated convolutions for
context) reads the image at the classifier's input size, scaled to 0..1, and predicts one map
per class at a quarter of the resolution, upsampled bilinearly to the input size. Summed over
a region, a class's map is that region's Shapley value for the class (:mod:`.training` teaches
it so); the same map serves any segmentation.
"""

from __future__ import annotations

import torch
from torch import nn

#: Channels of the encoder's layers (the artifact's JSON records it).
DEFAULT_WIDTH = 32


class ExplainerNet(nn.Module):
    """``(N, 3, H, W)`` pixels in 0..1 → ``(N, C, H, W)`` attribution maps."""

    def __init__(self, classes: int, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        c = width
        self.body = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1),
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The maps at the input's size; each low-resolution cell's value is spread over the
        pixels it covers (so a region's sum does not depend on the resolution)."""
        h, w = x.shape[2:]
        low = self.head(self.body(x))
        cells = low.shape[2] * low.shape[3]
        up = nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        return up * (cells / (h * w))
