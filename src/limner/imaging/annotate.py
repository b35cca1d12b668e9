"""Annotations drawn over panes: the ``regions`` pane (outlines and numbers) and the heatmap's
colour legend.

Both work on uint8 maps with Pillow and small numpy comparisons, so large photos stay cheap.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_OUTLINE = (255, 255, 0)
_RED = (214, 39, 40)
_BLUE = (31, 119, 180)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def regions_pane(image: np.ndarray, labels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The image with every region's outline and its id at the centre of its bounding box.

    ``labels`` is the region map at the image's size; ``boxes`` (M, 4) the regions' ``[x0, y0,
    x1, y1]`` (used to place the numbers).
    """
    h, w = labels.shape
    edge = np.zeros((h, w), dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    thick = max(1, round(max(h, w) / 400))
    if thick > 1:  # widen the outline so it survives being shown small
        grown = edge.copy()
        for d in range(1, thick):
            grown[:, d:] |= edge[:, :-d]
            grown[d:, :] |= edge[:-d, :]
        edge = grown
    base = Image.fromarray(image).convert("RGB")
    outline = Image.new("RGB", base.size, _OUTLINE)
    base.paste(outline, mask=Image.fromarray(edge.astype(np.uint8) * 255, "L"))
    draw = ImageDraw.Draw(base)
    size = max(10, round(max(h, w) / 28))
    font = _font(size)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes)):
        if x1 <= x0 or y1 <= y0:
            continue
        cx, cy = _inside(labels, i, int(x0), int(y0), int(x1), int(y1))
        text = str(i)
        left, top, right, bottom = draw.textbbox((cx, cy), text, font=font, anchor="mm")
        pad = max(1, size // 6)
        draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0))
        draw.text((cx, cy), text, fill=(255, 255, 255), font=font, anchor="mm")
    return np.asarray(base)


def _inside(labels: np.ndarray, region: int, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int]:
    """A point of the region near its box centre (the centre itself when it belongs to it)."""
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    if labels[min(cy, labels.shape[0] - 1), min(cx, labels.shape[1] - 1)] == region:
        return cx, cy
    step = max(1, max(x1 - x0, y1 - y0) // 64)
    sub = labels[y0:y1:step, x0:x1:step] == region
    ys, xs = np.nonzero(sub)
    if not len(ys):
        return cx, cy
    k = int(np.argmin((ys * step + y0 - cy) ** 2 + (xs * step + x0 - cx) ** 2))
    return int(xs[k] * step + x0), int(ys[k] * step + y0)


def with_legend(pane: np.ndarray, max_abs: float) -> np.ndarray:
    """The heatmap with a colour bar in its bottom-right corner: blue −max … 0 … red +max."""
    img = Image.fromarray(pane).convert("RGB")
    w, h = img.size
    bar_w = max(60, w // 4)
    bar_h = max(6, h // 40)
    size = max(9, bar_h + 2)
    font = _font(size)
    margin = max(4, w // 100)
    box_h = bar_h + size + 3 * margin
    x0, y0 = w - bar_w - 2 * margin, h - box_h
    if x0 < 0 or y0 < 0:
        return pane
    draw = ImageDraw.Draw(img)
    draw.rectangle((x0, y0, w - 1, h - 1), fill=(255, 255, 255))
    t = np.linspace(-1.0, 1.0, bar_w)
    strength = np.abs(t)[:, None] * 0.75
    colour = np.where(t[:, None] < 0, np.array(_BLUE), np.array(_RED))
    row = (200 * (1 - strength) + colour * strength).astype(np.uint8)
    bar = np.repeat(row[None], bar_h, axis=0)
    img.paste(Image.fromarray(bar), (x0 + margin, y0 + margin))
    ty = y0 + 2 * margin + bar_h
    draw.text((x0 + margin, ty), f"-{max_abs:.3g}", fill=(0, 0, 0), font=font, anchor="lt")
    draw.text((x0 + margin + bar_w // 2, ty), "0", fill=(0, 0, 0), font=font, anchor="mt")
    draw.text((x0 + margin + bar_w, ty), f"+{max_abs:.3g}", fill=(0, 0, 0), font=font, anchor="rt")
    return np.asarray(img)
