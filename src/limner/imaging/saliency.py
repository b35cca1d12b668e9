"""The pixel-level saliency pane of gradient methods, at the original image size."""

from __future__ import annotations

import numpy as np
from PIL import Image

_RED = np.array([214, 39, 40], dtype=np.uint8)
_BLUE = np.array([31, 119, 180], dtype=np.uint8)
#: The attribution at this percentile of |values| is drawn fully opaque (robust to a few
#: extreme pixels, as gradient maps often have).
SATURATION_PERCENTILE = 99.5


def upsample(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """A float map resized (bilinear, Pillow's "F" mode) to ``width`` × ``height``."""
    v = np.asarray(values, dtype=np.float32)
    if v.shape == (height, width):
        return v
    return np.asarray(Image.fromarray(v, "F").resize((width, height), Image.Resampling.BILINEAR))


def saturation(values: np.ndarray) -> float:
    """The |value| drawn fully opaque."""
    return float(np.percentile(np.abs(values), SATURATION_PERCENTILE)) or 1.0


def saliency_pane(image: np.ndarray, values: np.ndarray, scale: float | None = None) -> np.ndarray:
    """A pixel attribution ``values`` over a gray copy of ``image`` (rows of the same size, or a
    map upsampled to it): red where it pushes the class up, blue where down, more opaque the
    stronger (``scale``: the |value| drawn fully opaque); RGB uint8 at the image's size."""
    h, w = image.shape[:2]
    v = upsample(values, w, h)
    scale = saturation(v) if scale is None else scale
    alpha = np.clip(np.abs(v) / scale, 0.0, 1.0) * 0.8
    gray = np.asarray(Image.fromarray(image).convert("L"), dtype=np.float32) * 0.8 + 25.0
    colour = np.where((v >= 0)[..., None], _RED, _BLUE).astype(np.float32)
    out = gray[..., None] * (1.0 - alpha[..., None]) + colour * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
