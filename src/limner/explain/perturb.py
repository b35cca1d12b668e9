"""Perturbed images at the model's input size: regions switched off become the baseline.

Everything here works at the model's resolution, so the cost of an explanation does not depend
on the size of the original photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from limner.errors import InvalidInputError

BASELINES = ("mean", "blur", "gray", "black")


def baseline_image(image: np.ndarray, labels: np.ndarray, kind: str) -> np.ndarray:
    """What a switched-off region becomes: black 0, gray 128, the region's mean, or a blur."""
    if kind == "black":
        return np.zeros_like(image)
    if kind == "gray":
        return np.full_like(image, 128)
    if kind == "mean":
        m = int(labels.max()) + 1
        flat = labels.ravel()
        counts = np.maximum(np.bincount(flat, minlength=m), 1)
        means = np.stack(
            [
                np.bincount(flat, weights=image[..., c].ravel(), minlength=m) / counts
                for c in range(3)
            ],
            axis=1,
        )
        return np.round(means[labels]).astype(np.uint8)
    if kind == "blur":
        radius = max(image.shape[:2]) / 12.0
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    raise InvalidInputError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


class Perturber:
    """Builds perturbed copies of one image at model resolution."""

    def __init__(
        self, image: np.ndarray, labels: np.ndarray, baseline: str, count: int | None = None
    ) -> None:
        self.image = image  # (h, w, 3) uint8 at model size
        self.labels = labels  # (h, w) int32 at model size
        self.base = baseline_image(image, labels, baseline)
        # regions too small to survive the resize still count (they simply have no effect)
        self.count = count if count is not None else int(labels.max()) + 1

    def regions(self, z: np.ndarray) -> np.ndarray:
        """Images for binary region masks ``z`` (n, M): 1 keeps a region, 0 switches it off."""
        keep = np.asarray(z, dtype=bool)[:, self.labels]  # (n, h, w)
        return np.where(keep[..., None], self.image[None], self.base[None])

    def soft(self, masks: np.ndarray) -> np.ndarray:
        """Images for soft pixel masks (n, h, w) in [0, 1]: a blend of image and baseline."""
        a = masks[..., None].astype(np.float32)
        img = self.image.astype(np.float32)
        base = self.base.astype(np.float32)
        return np.clip(base + a * (img - base) + 0.5, 0, 255).astype(np.uint8)
