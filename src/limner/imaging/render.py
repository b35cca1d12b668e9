"""Drawing of explanation panes and heatmaps at the original image size.

Large photos are common, so every step is a lookup table or a Pillow composite (C loops that
release the GIL) rather than float arithmetic over every pixel. Every function here works on
any horizontal strip of rows as well as on the whole image, pixel for pixel the same: the
explanation draws its panes strip by strip (``limner.explain.panes``), so a pane is never held
whole at the original size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

#: How bright the regions outside a pane's set are drawn (fraction of the original).
DIM = 0.28
_DIM_LUT = np.clip(np.arange(256) * DIM + 26, 0, 255).astype(np.uint8)
_GRAY_LUT = [int(v * 0.8 + 25) for v in range(256)]
_RED = np.array([214, 39, 40], dtype=np.float32)
_BLUE = np.array([31, 119, 180], dtype=np.float32)


def dimmed(image: np.ndarray) -> np.ndarray:
    """The dimmed copy of an image that panes draw their other regions with."""
    # Pillow's point() applies the table in one C pass; numpy would first widen every uint8
    # index to int64 (8 bytes a subpixel) before looking it up
    return np.asarray(Image.fromarray(image).point(_DIM_LUT.tolist() * 3))


def region_pane(
    image: np.ndarray,
    labels: np.ndarray,
    region_ids: Sequence[int],
    dim: np.ndarray | None = None,
) -> np.ndarray:
    """The given regions at full colour over a dimmed copy of the image (``dim``, if the caller
    already has it)."""
    keep = np.zeros(max(int(labels.max()) + 1, 256 if labels.dtype == np.uint8 else 0), bool)
    keep[[i for i in region_ids if 0 <= i < keep.size]] = True
    dim = dimmed(image) if dim is None else dim
    if labels.dtype == np.uint8:  # an 8-bit lookup in C, no wide index arrays
        mask = Image.fromarray(labels, "L").point((keep * 255).astype(np.uint8).tolist())
        return np.asarray(Image.composite(Image.fromarray(image), Image.fromarray(dim), mask))
    return np.where(np.take(keep, labels)[..., None], image, dim)


def positive_pane(
    image: np.ndarray, labels: np.ndarray, region_ids: Sequence[int], dim: np.ndarray | None = None
) -> np.ndarray:
    """The positive regions at full colour over a dimmed image."""
    return region_pane(image, labels, region_ids, dim)


def negative_pane(
    image: np.ndarray, labels: np.ndarray, region_ids: Sequence[int], dim: np.ndarray | None = None
) -> np.ndarray:
    """The negative regions at full colour over a dimmed image."""
    return region_pane(image, labels, region_ids, dim)


def heatmap(image: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Every region coloured by its weight (red up, blue down) over a gray copy of the image;
    the stronger the weight, the more opaque the colour."""
    w = np.asarray(weights, dtype=np.float32)
    scale = float(np.abs(w).max(initial=0.0)) or 1.0
    t = w / scale
    colours = np.where(t[:, None] >= 0, _RED, _BLUE).astype(np.uint8)  # (M, 3)
    alpha = np.round(np.abs(t) * 0.75 * 255).astype(np.uint8)  # (M,)
    gray = Image.fromarray(image).convert("L").point(_GRAY_LUT).convert("RGB")
    if labels.dtype == np.uint8:  # palette and point lookups in C on the 8-bit map
        colour = Image.fromarray(labels, "P")
        palette = np.zeros((256, 3), np.uint8)
        palette[: len(colours)] = colours
        colour.putpalette(palette.ravel().tolist())
        a = np.zeros(256, np.uint8)
        a[: len(alpha)] = alpha
        mask = Image.fromarray(labels, "L").point(a.tolist())
        return np.asarray(Image.composite(colour.convert("RGB"), gray, mask))
    index = labels.astype(np.intp, copy=False)
    colour_img = Image.fromarray(np.take(colours, index, axis=0))
    mask_img = Image.fromarray(np.take(alpha, index), "L")
    return np.asarray(Image.composite(colour_img, gray, mask_img))
