"""Rendering of explanation panes and heatmaps at the original image size.

Large photos are common, so every step is a lookup table or a Pillow composite (C loops that
release the GIL) rather than float arithmetic over every pixel.
"""

from __future__ import annotations

import io
import struct
import zlib
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


def encode_png(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG.

    Small images go through Pillow. Large ones (panes of big photos) are written with the PNG
    "up" filter on every row and run-length deflate: about half the time of Pillow's adaptive
    filtering on a 12-megapixel pane, with a smaller file, and zlib releases the GIL so panes
    encode in parallel.
    """
    h, w = image.shape[:2]
    if h * w <= 1_000_000:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", compress_level=6)
        return buf.getvalue()
    rows = np.ascontiguousarray(image, dtype=np.uint8).reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 2  # filter type "up": each byte minus the byte above it
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", _deflate(raw.data)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _deflate(data: memoryview) -> bytes:
    # run-length matching: faster than level-1 deflate on filtered image rows, and smaller
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return z.compress(data) + z.flush()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
