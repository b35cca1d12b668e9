"""Annotations drawn over panes: the ``regions`` pane (outlines and numbers) and the heatmap's
colour legend.

Both work on uint8 maps with Pillow and small numpy comparisons, so large photos stay cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    x1, y1]`` (used to place the numbers). The whole pane is the one strip that holds every row.
    """
    h, w = labels.shape
    return regions_strip(image, labels, 0, 0, (w, h), number_positions(labels, boxes))


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
    h, w = pane.shape[:2]
    return _draw_legend(pane, max_abs, (w, h), (0, 0))


@dataclass(frozen=True)
class LegendLayout:
    """Where the legend of a pane goes: its box from ``(x0, y0)`` to the pane's bottom-right
    corner, the bar, the font size and the three labels' boxes ``(left, top, right, bottom)``
    in pane coordinates (they never overlap)."""

    x0: int
    y0: int
    bar: tuple[int, int, int, int]
    font_size: int
    labels: dict[str, tuple[int, int, int, int]]


def legend_size(width: int, height: int) -> int:
    """The legend's font size: a fixed share of the pane, so it reads the same at any photo
    size once the pane is shown at screen size (10 px at least)."""
    return max(10, round(max(width, height) / 36))


def legend_layout(width: int, height: int, max_abs: float) -> LegendLayout | None:
    """The legend's layout for a ``width``×``height`` pane: at :func:`legend_size`, smaller
    when the labels would not fit, None when the pane is too small even for 8-px labels."""
    for size in range(legend_size(width, height), 7, -1):
        layout = _layout_at(width, height, max_abs, size)
        if layout is not None:
            return layout
    return None


def _layout_at(width: int, height: int, max_abs: float, size: int) -> LegendLayout | None:
    font = _font(size)
    texts = {"low": f"-{max_abs:.3g}", "zero": "0", "high": f"+{max_abs:.3g}"}
    widths = {k: math.ceil(font.getlength(t)) for k, t in texts.items()}
    margin = max(4, size // 3)
    gap = max(4, size // 2)
    label_w = max(widths["low"], widths["high"])
    bar_w = max(width // 3, 2 * label_w + widths["zero"] + 2 * gap)
    bar_h = max(6, size // 2)
    x0 = width - bar_w - 2 * margin
    y0 = height - (bar_h + size + 3 * margin)
    if x0 < 0 or y0 < 0:
        return None
    bx, by = x0 + margin, y0 + margin
    ty = by + bar_h + margin
    mid = bx + bar_w // 2
    labels = {
        "low": (bx, ty, bx + widths["low"], ty + size),
        "zero": (mid - widths["zero"] // 2, ty, mid + (widths["zero"] + 1) // 2, ty + size),
        "high": (bx + bar_w - widths["high"], ty, bx + bar_w, ty + size),
    }
    return LegendLayout(x0, y0, (bx, by, bx + bar_w, by + bar_h), size, labels)


def _draw_legend(
    pane: np.ndarray, max_abs: float, full_size: tuple[int, int], origin: tuple[int, int]
) -> np.ndarray:
    """Draw the legend of a ``full_size`` pane onto ``pane``, the part of it from ``origin``."""
    w, h = full_size
    layout = legend_layout(w, h, max_abs)
    if layout is None:
        return pane
    img = Image.fromarray(pane).convert("RGB")
    ox, oy = origin
    font = _font(layout.font_size)
    draw = ImageDraw.Draw(img)
    draw.rectangle((layout.x0 - ox, layout.y0 - oy, w - ox - 1, h - oy - 1), fill=(255, 255, 255))
    bx0, by0, bx1, by1 = layout.bar
    t = np.linspace(-1.0, 1.0, bx1 - bx0)
    strength = np.abs(t)[:, None] * 0.75
    colour = np.where(t[:, None] < 0, np.array(_BLUE), np.array(_RED))
    row = (200 * (1 - strength) + colour * strength).astype(np.uint8)
    img.paste(Image.fromarray(np.repeat(row[None], by1 - by0, axis=0)), (bx0 - ox, by0 - oy))
    texts = {"low": f"-{max_abs:.3g}", "zero": "0", "high": f"+{max_abs:.3g}"}
    for key, (left, top, _right, _bottom) in layout.labels.items():
        draw.text((left - ox, top - oy), texts[key], fill=(0, 0, 0), font=font, anchor="lt")
    return np.asarray(img)


def outline_width(width: int, height: int) -> int:
    """Width in pixels of the ``regions`` pane's outlines."""
    return max(1, round(max(height, width) / 400))


def number_size(width: int, height: int) -> int:
    """Font size of the ``regions`` pane's numbers."""
    return max(10, round(max(height, width) / 28))


def number_positions(labels: np.ndarray, boxes: np.ndarray) -> list[tuple[int, int, int]]:
    """``(region, x, y)`` where the ``regions`` pane writes each region's number."""
    out = []
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes)):
        if x1 > x0 and y1 > y0:
            out.append((i, *_inside(labels, i, int(x0), int(y0), int(x1), int(y1))))
    return out


def regions_strip(
    image: np.ndarray,
    labels: np.ndarray,
    above: int,
    top: int,
    full_size: tuple[int, int],
    numbers: list[tuple[int, int, int]],
) -> np.ndarray:
    """Rows ``top`` … of the ``regions`` pane (the same pixels as :func:`regions_pane` there).

    ``image`` holds the strip's rows; ``labels`` the region ids of those rows preceded by the
    ``above`` rows over them (``outline_width`` of them, fewer at the top of the image), which
    the outlines of the first rows depend on; ``numbers`` comes from :func:`number_positions`.
    """
    w, h = full_size
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    thick = outline_width(w, h)
    if thick > 1:
        grown = edge.copy()
        for d in range(1, thick):
            grown[:, d:] |= edge[:, :-d]
            grown[d:, :] |= edge[:-d, :]
        edge = grown
    base = Image.fromarray(image).convert("RGB")
    outline = Image.new("RGB", base.size, _OUTLINE)
    base.paste(outline, mask=Image.fromarray(edge[above:].astype(np.uint8) * 255, "L"))
    draw = ImageDraw.Draw(base)
    size = number_size(w, h)
    font = _font(size)
    pad = max(1, size // 6)
    rows = image.shape[0]
    for i, cx, cy in numbers:
        if abs(cy - (top + rows / 2)) > rows / 2 + 2 * size + pad:
            continue  # the label is far from this strip
        text = str(i)
        left, t, right, b = draw.textbbox((cx, cy - top), text, font=font, anchor="mm")
        draw.rectangle((left - pad, t - pad, right + pad, b + pad), fill=(0, 0, 0))
        draw.text((cx, cy - top), text, fill=(255, 255, 255), font=font, anchor="mm")
    return np.asarray(base)


def legend_patch(width: int, height: int, max_abs: float) -> tuple[int, int, np.ndarray] | None:
    """The heatmap's colour legend alone: ``(x0, y0, patch)``, the patch covering the pane from
    ``(x0, y0)`` to its bottom-right corner (None when the pane is too small for it)."""
    layout = legend_layout(width, height, max_abs)
    if layout is None:
        return None
    x0, y0 = layout.x0, layout.y0
    blank = np.zeros((height - y0, width - x0, 3), np.uint8)
    return x0, y0, _draw_legend(blank, max_abs, (width, height), (x0, y0))
