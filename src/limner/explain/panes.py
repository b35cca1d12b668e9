"""Panes of an explanation, drawn strip by strip at the original size and encoded as they go.

A pane of a 40-megapixel photo is 120 MB, and drawing it whole with Pillow takes several such
copies. Here a pane is a *painter*: a function that draws any horizontal strip of rows from the
full-size photo and the region ids of those rows. Encoding runs the painter strip by strip and
hands each strip to the streaming PNG writer, so only a strip (a few MB) of a pane exists at a
time, and nothing at the original size but the photo itself (3 bytes a pixel) is kept.

To add a pane: write a painter whose strips are the same pixels as drawing the whole image at
once; work out what depends on the whole image (the scale of the weights, a small map to be
upsampled) before the strips, and read neighbouring rows from ``source`` when a pixel depends on
them (outlines). Register its factory in ``limner.explain.result.PAINTERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from limner.explain.segmentation import RegionMap
from limner.imaging.png import encode_png_strips, write_png_strips
from limner.imaging.render import heatmap, region_pane
from limner.imaging.strips import row_ranges


@dataclass(frozen=True)
class PaneSource:
    """What panes are drawn from: the photo at its original size and its region map."""

    image: np.ndarray  # (H, W, 3) uint8, read only
    regions: RegionMap

    @property
    def width(self) -> int:
        """Original width."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Original height."""
        return int(self.image.shape[0])

    def labels(self, top: int, bottom: int) -> np.ndarray:
        """Region ids of rows ``top`` to ``bottom`` (exclusive) at the original width."""
        return self.regions.rows(top, bottom)


#: Draws rows ``top`` to ``bottom`` (exclusive) of a pane: RGB uint8 ``(bottom - top, W, 3)``.
Painter = Callable[[PaneSource, int, int], np.ndarray]


def regions_painter(region_ids: Sequence[int]) -> Painter:
    """The given regions at full colour over a dimmed copy of the photo (the positive and
    negative panes)."""
    ids = list(region_ids)

    def paint(source: PaneSource, top: int, bottom: int) -> np.ndarray:
        return region_pane(source.image[top:bottom], source.labels(top, bottom), ids)

    return paint


def heatmap_painter(weights: np.ndarray) -> Painter:
    """Every region coloured by its weight over a gray copy of the photo."""

    def paint(source: PaneSource, top: int, bottom: int) -> np.ndarray:
        return heatmap(source.image[top:bottom], source.labels(top, bottom), weights)

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
