"""Generated detection scenes with exact object masks, and a classical detector for them.

A scene is muted noise with one or two red or blue squares or discs that do not touch; each
object's mask (and so its box) is known exactly. :func:`colour_detector` finds them the
classical way (connected areas of strongly red or blue pixels), which makes the pointing game
and the detection benchmarks checkable without weights to download.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from limner.models.detection import Detector

#: The classes of the scenes' objects.
SCENE_LABELS = ["red", "blue"]
_COLOURS = {0: (210, 40, 40), 1: (40, 40, 210)}


def scene(
    seed: int, width: int = 96, height: int = 96
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """A ``width``×``height`` RGB uint8 scene and its objects as ``(class, mask)``: one or two
    squares or discs, sides of 18–30% of the shorter side, at least 4 pixels apart."""
    rng = np.random.default_rng(seed)
    img = rng.integers(70, 150, (height, width, 1)).repeat(3, axis=2)
    img = (img + rng.integers(-12, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
    objects: list[tuple[int, np.ndarray]] = []
    taken = np.zeros((height, width), bool)
    yy, xx = np.mgrid[:height, :width]
    short = min(width, height)
    for _ in range(int(rng.integers(1, 3))):
        for _try in range(20):
            side = int(rng.integers(round(0.19 * short), round(0.31 * short)))
            y = int(rng.integers(2, height - side - 2))
            x = int(rng.integers(2, width - side - 2))
            if rng.random() < 0.5:
                mask = (yy >= y) & (yy < y + side) & (xx >= x) & (xx < x + side)
            else:
                r = side / 2
                mask = (yy - y - r) ** 2 + (xx - x - r) ** 2 <= r * r
            if not ndimage.binary_dilation(mask, iterations=4)[taken].any():
                break
        else:
            continue
        cls = int(rng.integers(0, 2))
        img[mask] = _COLOURS[cls]
        taken |= mask
        objects.append((cls, mask))
    return img, objects


def colour_detector(width: int = 96, height: int = 96) -> Detector:
    """A classical detector of the scenes' objects at ``width``×``height``: connected areas of
    strongly red or blue pixels (40 pixels or more), boxed (``xyxy``), scored by how strongly
    coloured they are and how much of their box they fill."""

    def fn(images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for im in images.astype(np.int32):
            boxes, scores, labels = [], [], []
            for cls, (a, b, c) in enumerate(((0, 1, 2), (2, 0, 1))):
                strength = im[..., a] - np.maximum(im[..., b], im[..., c])
                parts, _ = ndimage.label(strength > 90)
                for k, found in enumerate(ndimage.find_objects(parts), start=1):
                    if found is None:
                        continue
                    inside = parts[found] == k
                    area = int(inside.sum())
                    if area < 40:
                        continue
                    ys, xs = found
                    box_area = (ys.stop - ys.start) * (xs.stop - xs.start)
                    colour = float(strength[found][inside].mean()) / 170
                    boxes.append([xs.start, ys.start, xs.stop, ys.stop])
                    scores.append(min(1.0, colour) * min(1.0, 1.3 * area / box_area))
                    labels.append(cls)
            out.append((np.array(boxes, float).reshape(-1, 4), np.array(scores), np.array(labels)))
        return out

    return Detector(fn, SCENE_LABELS, (width, height), name="colour-blobs")


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The ``xyxy`` box of a mask (pixels, right and bottom exclusive)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
