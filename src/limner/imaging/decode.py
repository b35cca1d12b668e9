"""Safe decoding of any common image format into an RGB uint8 array.

The pixel limit is checked on the header, before any pixel is decoded, so a small file that
claims a huge canvas (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from limner.errors import ImageDecodeError, InvalidInputError, PayloadTooLargeError
from limner.imaging.strips import row_ranges

#: Default limit on decoded pixels (40 megapixels).
DEFAULT_MAX_PIXELS = 40_000_000

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray

_ORIENTATION = 0x0112  # the EXIF orientation tag

# Pillow's own bomb check would raise its own error type; limner checks the header itself.
Image.MAX_IMAGE_PIXELS = None


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file into an RGB uint8 array of shape ``(H, W, 3)``."""
    p = Path(path)
    data = _read_file(p)
    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{p}: {exc.message}") from exc
    except PayloadTooLargeError as exc:
        raise PayloadTooLargeError(f"{p}: {exc.message}") from exc


def _read_file(p: Path) -> bytes:
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file")
    if p.is_dir():
        raise InvalidInputError(f"{p}: is a directory, not an image")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{p}: cannot be read ({exc.strerror})") from exc


def decode_image(
    image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, scale: float | None = None
) -> np.ndarray:
    """Turn a path, encoded bytes, a PIL image or an array into RGB uint8 ``(H, W, 3)``.

    Gray, palette, RGBA (composited on white), CMYK and 16-bit images become RGB uint8; EXIF
    orientation is applied; GIF and other animations give their first frame.

    An array is read as pixel values on 0–255 (uint8, or other numbers within 0–255), or as
    ``value × scale`` when ``scale`` is given (``scale=255`` for floats where 1.0 is white,
    ``255/65535`` for 16-bit values). An array whose scale cannot be told is refused rather
    than guessed: floats all within [0, 1] (a [0, 1] image, or a very dark 0–255 one), values
    over 255, and negative values (a normalized tensor, which no scale turns back into pixels).

    Raises:
        ImageDecodeError: empty, corrupt or non-image bytes.
        PayloadTooLargeError: more than ``max_pixels`` pixels, checked before decoding.
        InvalidInputError: an array of the wrong shape or of an ambiguous scale, or a missing
            file.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image, max_pixels, scale)
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


def check_image(
    image: str | os.PathLike[str] | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """Check that a file or encoded bytes hold a readable image within ``max_pixels``, without
    keeping its pixels; return its ``(width, height)`` upright (EXIF orientation applied).

    A JPEG is decoded at an eighth of its size (the decoder's DCT scaling, Pillow's ``draft``):
    every byte of the data is still read, at 1/64 of the memory and a fraction of the time.
    Raises what :func:`decode_image` raises.
    """
    if isinstance(image, (str, os.PathLike)):
        p = Path(image)
        try:
            return check_image(_read_file(p), max_pixels=max_pixels)
        except (ImageDecodeError, PayloadTooLargeError) as exc:
            raise type(exc)(f"{p}: {exc.message}") from exc
    img = _open(image, max_pixels)
    width, height = img.size
    try:
        img.seek(0)
        if img.format == "JPEG":
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        img.load()
        orientation = 1
        with contextlib.suppress(Exception):
            orientation = int(img.getexif().get(_ORIENTATION, 1))
    except Exception as exc:
        raise ImageDecodeError(f"the image data are corrupt or truncated ({exc})") from exc
    finally:
        img.close()
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _from_bytes(data: bytes, max_pixels: int) -> np.ndarray:
    img = _open(data, max_pixels)
    try:
        img.seek(0)
        img.load()
    except Exception as exc:
        raise ImageDecodeError(f"the image data are corrupt or truncated ({exc})") from exc
    try:
        return _to_rgb(img)
    finally:
        img.close()  # the decoded canvas goes now, not when the caller's frame ends


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open encoded bytes lazily (header only) and check the pixel limit."""
    img = _open_header(data)
    _check_size(img.width, img.height, max_pixels)
    return img


def header_pixels(data: bytes) -> int:
    """How many pixels encoded image ``data`` decodes to, read from its header alone."""
    with _open_header(data) as img:
        width, height = img.size
    return int(width) * int(height)


def _open_header(data: bytes) -> Image.Image:
    """Pillow's lazy image of encoded bytes (only the header read), or a one-line error."""
    if not data:
        raise ImageDecodeError("the file is empty, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "not a readable image (supported: PNG, JPEG, WebP, BMP, TIFF, GIF)"
        ) from exc
    except Exception as exc:  # Pillow raises many types for broken headers
        raise ImageDecodeError(f"not a readable image ({exc})") from exc


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
    """The RGB array of a loaded image, converted strip by strip into the (oriented) output.

    Pillow holds RGB in four bytes a pixel, so a whole-image ``convert``, ``exif_transpose`` or
    ``np.asarray`` (``tobytes`` joins a list of chunks: two more copies) would each add one or
    two full-size copies; strips add a few MB.
    """
    orientation = 1
    with contextlib.suppress(Exception):  # a broken EXIF block must not make it unreadable
        orientation = int(img.getexif().get(_ORIENTATION, 1))
    width, height = img.size
    swap = orientation in (5, 6, 7, 8)
    out = np.empty((width, height, 3) if swap else (height, width, 3), np.uint8)
    target = _unorient(out, orientation)  # a view of ``out`` in the stored image's layout
    convert = _strip_converter(img)
    for top, bottom in row_ranges(height, width):
        target[top:bottom] = convert(img.crop((0, top, width, bottom)))
    return out


def _unorient(out: np.ndarray, orientation: int) -> np.ndarray:
    """The view of an upright array in the layout the image is stored in (EXIF orientation
    2..8 are the flips and quarter turns of ``ImageOps.exif_transpose``, undone)."""
    if orientation == 2:
        return out[:, ::-1]
    if orientation == 3:
        return out[::-1, ::-1]
    if orientation == 4:
        return out[::-1]
    if orientation == 5:
        return out.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(out, 1)
    if orientation == 7:
        return out[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(out, -1)
    return out


def _strip_converter(img: Image.Image) -> Callable[[Image.Image], np.ndarray]:
    """How one strip of ``img`` becomes RGB uint8 (any scaling uses the whole image's range)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        lo, hi = 0.0, 1.0 if mode == "F" else 0.0
        for top, bottom in row_ranges(img.height, img.width):
            arr = np.asarray(img.crop((0, top, img.width, bottom)), dtype=np.float64)
            lo, hi = min(lo, float(arr.min(initial=0))), max(hi, float(arr.max(initial=0)))
        if mode == "F":
            return lambda strip: _gray_to_rgb(
                np.asarray(strip, dtype=np.float64), lo, max(hi - lo, 1e-12)
            )
        top_value = 65535.0 if hi > 255 or mode.startswith("I;16") else 255.0
        return lambda strip: _gray_to_rgb(np.asarray(strip, dtype=np.float64), 0.0, top_value)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        return _on_white
    if mode == "RGB":
        return np.asarray
    return lambda strip: np.asarray(strip.convert("RGB"))


def _gray_to_rgb(arr: np.ndarray, lo: float, span: float) -> np.ndarray:
    gray = np.clip((arr - lo) / span * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _on_white(strip: Image.Image) -> np.ndarray:
    rgba = strip.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


def _from_array(arr: np.ndarray, max_pixels: int, scale: float | None = None) -> np.ndarray:
    if arr.ndim != 2 and (arr.ndim != 3 or arr.shape[2] not in (1, 3, 4)):
        raise InvalidInputError(f"an image array must have shape (H, W, 3), got {tuple(arr.shape)}")
    _check_size(arr.shape[1], arr.shape[0], max_pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype == np.uint8 and arr.shape[2] == 3 and scale is None:
        return np.ascontiguousarray(arr)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidInputError(f"an image array must hold numbers, not {arr.dtype}")
    # converted strip by strip: a float copy of a whole photo is 12 bytes a pixel or more
    h, w = arr.shape[:2]
    strips = list(row_ranges(h, w))
    factor = array_scale(arr, strips, scale)
    out = np.empty((h, w, 3), np.uint8)
    for t, b in strips:
        part = arr[t:b]
        if factor != 1.0 or part.dtype != np.uint8:
            part = part.astype(np.float32) * np.float32(factor)
        values = _array_values(part)
        if values.dtype != np.uint8:
            values = np.clip(np.nan_to_num(values), 0, 255).round()
        out[t:b] = values
    return out


def array_scale(arr: np.ndarray, strips: list[tuple[int, int]], scale: float | None) -> float:
    """What an array's values are multiplied by to give 0–255 pixels: ``scale`` when given,
    else 1 for values that can only be 0–255; an ambiguous array is refused (one line)."""
    if scale is not None:
        if not (math.isfinite(scale) and scale > 0):
            raise InvalidInputError(f"an image scale must be a positive number, not {scale}")
        return float(scale)
    if arr.dtype == np.uint8 or arr.dtype == np.bool_:
        return 255.0 if arr.dtype == np.bool_ else 1.0
    colour = slice(0, min(arr.shape[2], 3))
    with warnings.catch_warnings():  # an all-NaN strip: nan, which no test below fails
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = min(float(np.nanmin(arr[t:b, :, colour])) for t, b in strips)
        hi = max(float(np.nanmax(arr[t:b, :, colour])) for t, b in strips)
    if lo < 0:
        raise InvalidInputError(
            f"the image array has negative values (down to {lo:.3g}): it looks like a "
            "normalized tensor; give the RGB image (0–255) instead"
        )
    if hi > 255:
        raise InvalidInputError(
            f"the image array has values up to {hi:.6g}, over 255: give its scale "
            "(e.g. 255/65535 for 16-bit values)"
        )
    if np.issubdtype(arr.dtype, np.floating) and 0 < hi <= 1:
        raise InvalidInputError(
            "a float image array with every value within [0, 1] is ambiguous: give scale=255 "
            "when 1.0 means white, or scale=1 when its values are on 0–255"
        )
    return 1.0


def _array_values(arr: np.ndarray) -> np.ndarray:
    """Three channels of an ``(H, W, 1|3|4)`` array: gray repeated, alpha composited on white."""
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        return arr[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
    return arr
