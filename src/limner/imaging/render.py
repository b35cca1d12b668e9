"""Rendering of explanation panes and heatmaps at the original image size."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

#: How bright the regions outside a pane's set are drawn (fraction of the original).
DIM = 0.28


def _mask_pane(image: np.ndarray, labels: np.ndarray, region_ids: Sequence[int]) -> np.ndarray:
    keep = np.zeros(int(labels.max()) + 1, dtype=bool)
    keep[[i for i in region_ids if 0 <= i < keep.size]] = True
    mask = keep[labels]
    dim = (image.astype(np.float32) * DIM + 255 * 0.10).astype(np.uint8)
    return np.where(mask[..., None], image, dim)


def positive_pane(image: np.ndarray, labels: np.ndarray, region_ids: Sequence[int]) -> np.ndarray:
    """The positive regions at full colour over a dimmed image."""
    return _mask_pane(image, labels, region_ids)


def negative_pane(image: np.ndarray, labels: np.ndarray, region_ids: Sequence[int]) -> np.ndarray:
    """The negative regions at full colour over a dimmed image."""
    return _mask_pane(image, labels, region_ids)


def heatmap(image: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Every region coloured by its weight (red up, blue down) over a gray copy of the image."""
    w = np.asarray(weights, dtype=np.float32)
    scale = float(np.abs(w).max(initial=0.0)) or 1.0
    t = w / scale  # in [-1, 1]
    red = np.array([214, 39, 40], dtype=np.float32)
    blue = np.array([31, 119, 180], dtype=np.float32)
    colours = np.where(t[:, None] >= 0, red, blue)  # (M, 3)
    alpha = (np.abs(t) * 0.75)[:, None]  # (M, 1)
    gray = image.astype(np.float32).mean(axis=2, keepdims=True) * 0.8 + 25
    lut_c = (colours * alpha).astype(np.float32)
    a = alpha[labels]  # (H, W, 1)
    out = gray * (1 - a) + lut_c[labels]
    return np.clip(out, 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG (fast compression for large images)."""
    buf = io.BytesIO()
    level = 6 if image.shape[0] * image.shape[1] <= 1_000_000 else 1
    Image.fromarray(image).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()
