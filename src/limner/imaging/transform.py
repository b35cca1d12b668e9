"""Resizing of images and label maps."""

from __future__ import annotations

import numpy as np
from PIL import Image

from limner.imaging.strips import row_ranges


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an RGB uint8 image to ``width``×``height`` (area-averaging when shrinking)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1] and height < image.shape[0]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    if shrinking and (image.shape[1] > 4 * width or image.shape[0] > 4 * height):
        # reduce() in integer steps first: fast and alias-free for very large photos
        factor = max(1, min(image.shape[1] // (2 * width), image.shape[0] // (2 * height)))
        return np.asarray(reduce(image, factor).resize((width, height), Image.Resampling.BILINEAR))
    return np.asarray(Image.fromarray(image).resize((width, height), method))


def reduce(image: np.ndarray, factor: int) -> Image.Image:
    """``Image.reduce(factor)`` of an RGB uint8 array (each output pixel the mean of a
    ``factor``×``factor`` box), made strip by strip: the same pixels as reducing the whole
    image, without the four-bytes-a-pixel Pillow copy of it."""
    h, w = image.shape[:2]
    out = Image.new("RGB", (-(-w // factor), -(-h // factor)))
    for top, bottom in row_ranges(h, w, multiple=factor):
        out.paste(Image.fromarray(image[top:bottom]).reduce(factor), (0, top // factor))
    return out


def resize_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an integer label map with nearest-neighbour sampling (ids stay exact)."""
    h, w = labels.shape
    if (width, height) == (w, h):
        return labels
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.intp)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.intp)
    return labels[rows[:, None], cols[None, :]]


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size of ``width``×``height`` scaled down so that its longer side is ≤ ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
