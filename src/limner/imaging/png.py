"""PNG encoding of RGB images, whole or streamed strip by strip.

Small images go through Pillow. Large ones (panes of big photos) are written with the PNG "up"
filter on every row and run-length deflate: about half the time of Pillow's adaptive filtering
on a 12-megapixel pane, with a smaller file, and zlib releases the GIL so panes encode in
parallel. They are streamed: each strip of rows is filtered and compressed as it arrives and
leaves as its own IDAT chunk, so neither the pane nor its encoding need be held whole.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from PIL import Image

from limner.imaging.strips import row_ranges

#: Images up to this many pixels are encoded by Pillow (adaptive filters, smaller files).
PILLOW_MAX_PIXELS = 1_000_000

Write = Callable[[bytes], Any]


def encode_png(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 array ``(H, W, 3)`` as PNG."""
    h, w = image.shape[:2]
    if h * w <= PILLOW_MAX_PIXELS:
        return encode_png_strips([image], w, h)
    return encode_png_strips((image[t:b] for t, b in row_ranges(h, w)), w, h)


def encode_png_strips(strips: Iterable[np.ndarray], width: int, height: int) -> bytes:
    """Encode an image given as strips of rows (top to bottom) as PNG bytes."""
    parts: list[bytes] = []
    write_png_strips(strips, width, height, parts.append)
    return b"".join(parts)


def write_png_strips(strips: Iterable[np.ndarray], width: int, height: int, write: Write) -> None:
    """Write an image given as RGB uint8 strips of rows (top to bottom, ``width`` wide,
    ``height`` rows in all) as PNG through ``write``, one strip at a time."""
    if width * height <= PILLOW_MAX_PIXELS:
        parts = list(strips)
        pixels = parts[0] if len(parts) == 1 else np.concatenate(parts)
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(
            buf, format="PNG", compress_level=6
        )
        write(buf.getvalue())
        return
    writer = PngWriter(width, height, write)
    for rows in strips:
        writer.add(rows)
    writer.close()


class PngWriter:
    """Streams an 8-bit RGB PNG: the header now, IDAT chunks as rows are added, the end on
    :meth:`close`."""

    def __init__(self, width: int, height: int, write: Write) -> None:
        self.width, self.height = width, height
        self._write = write
        self._z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)  # run-length matching:
        # faster than level-1 deflate on filtered image rows, and smaller
        self._previous: np.ndarray | None = None  # the last row added (the "up" filter's input)
        self._rows = 0
        write(b"\x89PNG\r\n\x1a\n")
        write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))

    def add(self, strip: np.ndarray) -> None:
        """Add the next rows, RGB uint8 ``(n, width, 3)``."""
        n = strip.shape[0]
        if strip.shape[1:] != (self.width, 3) or self._rows + n > self.height:
            raise ValueError(f"a strip of shape {strip.shape} does not fit the PNG")
        rows = np.ascontiguousarray(strip, dtype=np.uint8).reshape(n, self.width * 3)
        raw = np.empty((n, self.width * 3 + 1), np.uint8)
        raw[:, 0] = 2  # filter type "up": each byte minus the byte above it (0 above the top)
        raw[0, 1:] = rows[0] if self._previous is None else rows[0] - self._previous
        np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
        self._previous = rows[-1].copy()
        self._rows += n
        self._emit(self._z.compress(raw.data))

    def close(self) -> None:
        """Finish the stream (every row must have been added)."""
        if self._rows != self.height:
            raise ValueError(f"the PNG has {self.height} rows, {self._rows} were added")
        self._emit(self._z.flush())
        self._write(_chunk(b"IEND", b""))

    def _emit(self, data: bytes) -> None:
        if data:
            self._write(_chunk(b"IDAT", data))


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join([struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)])
