"""Panes of an explanation, drawn strip by strip at the original size and encoded as they go.

A pane of a 40-megapixel photo is 120 MB, and drawing it whole with Pillow takes several such
copies. Here a pane is a *painter*: a function that draws any horizontal strip of rows from the
full-size photo and the region ids of those rows. Encoding runs the painter strip by strip and
hands each strip to the streaming PNG writer, so only a strip (a few MB) of a pane exists at a
time, and nothing at the original size but the photo itself (3 bytes a pixel) is kept.

The ``labels`` pane is data, not a picture: the region id of every pixel as a lossless 16-bit
grayscale PNG (:func:`write_labels`), written strip by strip like the others.

To add a pane: write a painter whose strips are the same pixels as drawing the whole image at
once; work out what depends on the whole image (the scale of the weights, a small map to be
upsampled) before the strips, and read neighbouring rows from ``source`` when a pixel depends on
them (outlines). Register its factory in ``limner.explain.result.PAINTERS``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from limner.explain.segmentation import RegionMap
from limner.imaging.annotate import (
    legend_patch,
    number_positions,
    outline_width,
    regions_strip,
)
from limner.imaging.png import encode_png_strips, write_png_strips
from limner.imaging.render import heatmap, region_pane
from limner.imaging.strips import row_ranges


class OriginalSize:
    """``width`` and ``height`` of the photo at its original size (``image``, (H, W, 3))."""

    image: np.ndarray

    @property
    def width(self) -> int:
        """Original width."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Original height."""
        return int(self.image.shape[0])


@dataclass(frozen=True)
class PaneSource(OriginalSize):
    """What panes are drawn from: the photo at its original size and its region map."""

    image: np.ndarray  # (H, W, 3) uint8, read only
    regions: RegionMap

    def labels(self, top: int, bottom: int) -> np.ndarray:
        """Region ids of rows ``top`` to ``bottom`` (exclusive) at the original width."""
        return self.regions.rows(top, bottom)


#: Draws rows ``top`` to ``bottom`` (exclusive) of a pane: RGB uint8 ``(bottom - top, W, 3)``.
Painter = Callable[[PaneSource, int, int], np.ndarray]


def highlight_painter(region_ids: Sequence[int]) -> Painter:
    """The given regions at full colour over a dimmed copy of the photo (the positive and
    negative panes)."""
    ids = list(region_ids)

    def paint(source: PaneSource, top: int, bottom: int) -> np.ndarray:
        return region_pane(source.image[top:bottom], source.labels(top, bottom), ids)

    return paint


def heatmap_painter(weights: np.ndarray) -> Painter:
    """Every region coloured by its weight over a gray copy of the photo, with the colour
    legend (drawn once, small) over the bottom-right corner."""
    scale = float(np.abs(weights).max(initial=0.0))
    legend: dict[tuple[int, int], tuple[int, int, np.ndarray] | None] = {}

    def paint(source: PaneSource, top: int, bottom: int) -> np.ndarray:
        strip = heatmap(source.image[top:bottom], source.labels(top, bottom), weights)
        size = (source.width, source.height)
        if size not in legend:
            legend[size] = legend_patch(*size, scale)
        patch = legend[size]
        if patch is None or bottom <= patch[1]:
            return strip
        x0, y0, pixels = patch
        strip = np.array(strip)
        first = max(top, y0)
        strip[first - top :, x0:] = pixels[first - y0 : bottom - y0]
        return strip

    return paint


def outlines_painter(boxes: np.ndarray) -> Painter:
    """Every region's outline and its number (the ``regions`` pane, the same for every class).

    Where the numbers go is worked out once from the whole region map (one byte a pixel, for as
    long as that takes); each strip reads the rows above it that its outlines depend on."""
    numbers: list[list[tuple[int, int, int]]] = []

    def paint(source: PaneSource, top: int, bottom: int) -> np.ndarray:
        if not numbers:
            numbers.append(number_positions(source.regions.original, boxes))
        above = min(top, outline_width(source.width, source.height))
        labels = source.labels(top - above, bottom)
        size = (source.width, source.height)
        return regions_strip(source.image[top:bottom], labels, above, top, size, numbers[0])

    return paint


def strips(source: PaneSource, paint: Painter) -> Iterator[np.ndarray]:
    """The pane's strips of rows, top to bottom, each drawn when it is asked for."""
    for top, bottom in row_ranges(source.height, source.width):
        yield paint(source, top, bottom)


def render(source: PaneSource, paint: Painter) -> np.ndarray:
    """The whole pane, RGB uint8 ``(H, W, 3)``."""
    out = np.empty((source.height, source.width, 3), np.uint8)
    for top, bottom in row_ranges(source.height, source.width):
        out[top:bottom] = paint(source, top, bottom)
    return out


def encode(source: PaneSource, paint: Painter) -> bytes:
    """The pane as PNG bytes, encoded strip by strip as it is drawn."""
    return encode_png_strips(strips(source, paint), source.width, source.height)


def write(source: PaneSource, paint: Painter, file: BinaryIO) -> None:
    """Write the pane as PNG to ``file`` strip by strip: neither the pane nor its encoding is
    held whole."""
    write_png_strips(strips(source, paint), source.width, source.height, file.write)


#: The largest region id a 16-bit ``labels`` pane holds.
MAX_LABEL = 65_535


def label_strips(source: PaneSource) -> Iterator[np.ndarray]:
    """The region id of every pixel at the original size, top to bottom in strips of rows,
    as unsigned 16-bit ints."""
    if source.regions.count - 1 > MAX_LABEL:
        raise ValueError(f"{source.regions.count} regions do not fit a 16-bit label map")
    for top, bottom in row_ranges(source.height, source.width):
        yield source.labels(top, bottom).astype(np.uint16)


def render_labels(source: PaneSource) -> np.ndarray:
    """The whole label map, uint16 ``(H, W)``: pixel value = region id."""
    out = np.empty((source.height, source.width), np.uint16)
    top = 0
    for rows in label_strips(source):
        out[top : top + len(rows)] = rows
        top += len(rows)
    return out


def encode_labels(source: PaneSource) -> bytes:
    """The ``labels`` pane as PNG bytes (16-bit grayscale, pixel value = region id)."""
    parts: list[bytes] = []
    write_gray16(label_strips(source), source.width, source.height, parts.append)
    return b"".join(parts)


def write_labels(source: PaneSource, file: BinaryIO) -> None:
    """Write the ``labels`` pane as PNG to an open binary file, strip by strip."""
    write_gray16(label_strips(source), source.width, source.height, file.write)


def write_gray16(
    strips: Iterator[np.ndarray], width: int, height: int, write: Callable[[bytes], Any]
) -> None:
    """Write a 16-bit grayscale PNG from uint16 strips of rows (top to bottom) through
    ``write``: each strip is filtered ("up") and compressed as it arrives, so neither the image
    nor its encoding is held whole. Lossless: Pillow, OpenCV or imageio read the ids back."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(data, zlib.crc32(kind))
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    write(b"\x89PNG\r\n\x1a\n")
    write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)))
    z = zlib.compressobj(6)
    previous = np.zeros(2 * width, np.uint8)
    rows_added = 0
    for strip in strips:
        n = strip.shape[0]
        if strip.shape[1:] != (width,) or rows_added + n > height:
            raise ValueError(f"a strip of shape {strip.shape} does not fit the PNG")
        rows = np.ascontiguousarray(strip, dtype=">u2").view(np.uint8).reshape(n, 2 * width)
        raw = np.empty((n, 2 * width + 1), np.uint8)
        raw[:, 0] = 2  # filter "up": each byte minus the byte above it (0 above the top)
        raw[0, 1:] = rows[0] - previous
        np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
        previous = rows[-1].copy()
        rows_added += n
        data = z.compress(raw.data)
        if data:
            write(chunk(b"IDAT", data))
    if rows_added != height:
        raise ValueError(f"the PNG has {height} rows, {rows_added} were added")
    write(chunk(b"IDAT", z.flush()))
    write(chunk(b"IEND", b""))
