"""Safe decoding of any common image format into an RGB uint8 array.

The pixel limit is checked on the header, before any pixel is decoded, so a small file that
claims a huge canvas (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from limner.errors import ImageDecodeError, InvalidInputError, PayloadTooLargeError

#: Default limit on decoded pixels (40 megapixels).
DEFAULT_MAX_PIXELS = 40_000_000

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray

_ORIENTATION = 0x0112  # the EXIF orientation tag

# Pillow's own bomb check would raise its own error type; limner checks the header itself.
Image.MAX_IMAGE_PIXELS = None


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file into an RGB uint8 array of shape ``(H, W, 3)``."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file")
    if p.is_dir():
        raise InvalidInputError(f"{p}: is a directory, not an image")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{p}: cannot be read ({exc.strerror})") from exc
    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{p}: {exc.message}") from exc
    except PayloadTooLargeError as exc:
        raise PayloadTooLargeError(f"{p}: {exc.message}") from exc


def decode_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Turn a path, encoded bytes, a PIL image or an array into RGB uint8 ``(H, W, 3)``.

    Gray, palette, RGBA (composited on white), CMYK and 16-bit images become RGB uint8; EXIF
    orientation is applied; GIF and other animations give their first frame.

    Raises:
        ImageDecodeError: empty, corrupt or non-image bytes.
        PayloadTooLargeError: more than ``max_pixels`` pixels, checked before decoding.
        InvalidInputError: an array of the wrong shape or a missing file.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels)
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, max_pixels)
        return _to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels=max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(image), max_pixels)
    raise InvalidInputError(
        f"cannot read an image from {type(image).__name__}; "
        "give a path, bytes, a PIL image or an RGB uint8 array"
    )


def _from_bytes(data: bytes, max_pixels: int) -> np.ndarray:
    if not data:
        raise ImageDecodeError("the file is empty, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "not a readable image (supported: PNG, JPEG, WebP, BMP, TIFF, GIF)"
        ) from exc
    except Exception as exc:  # Pillow raises many types for broken headers
        raise ImageDecodeError(f"not a readable image ({exc})") from exc
    _check_size(img.width, img.height, max_pixels)
    try:
        img.seek(0)
        img.load()
    except Exception as exc:
        raise ImageDecodeError(f"the image data are corrupt or truncated ({exc})") from exc
    return _to_rgb(img)


def header_pixels(data: bytes) -> int:
    """How many pixels encoded image ``data`` decodes to, read from its header alone."""
    if not data:
        raise ImageDecodeError("the file is empty, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "not a readable image (supported: PNG, JPEG, WebP, BMP, TIFF, GIF)"
        ) from exc
    except Exception as exc:  # Pillow raises many types for broken headers
        raise ImageDecodeError(f"not a readable image ({exc})") from exc
    return int(width) * int(height)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"the image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            f"the image is {width}×{height} = {width * height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:g} megapixels (raise it with max_pixels=, --max-pixels "
            f"on the command line or LIMNER_MAX_PIXELS for the service)"
        )


def _to_rgb(img: Image.Image) -> np.ndarray:
    with contextlib.suppress(Exception):  # a broken EXIF block must not make it unreadable
        if img.getexif().get(_ORIENTATION, 1) != 1:  # transpose (a copy) only when needed
            img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        gray = np.clip((arr - lo) / max(hi - lo, 1e-12) * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode in ("RGBA", "LA", "PA") or img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _from_array(arr: np.ndarray, max_pixels: int) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InvalidInputError(f"an image array must have shape (H, W, 3), got {tuple(arr.shape)}")
    _check_size(arr.shape[1], arr.shape[0], max_pixels)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = arr[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr, initial=0)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr)
