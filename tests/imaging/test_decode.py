"""Decoding of every supported format and mode, and refusal of bad or oversized input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from limner.errors import ImageDecodeError, InvalidInputError, PayloadTooLargeError
from limner.imaging import decode_image, read_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def rgb() -> Image.Image:
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[:, :20] = (200, 30, 30)
    arr[:, 20:] = (20, 40, 220)
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_formats_decode_to_rgb_uint8(rgb, fmt):
    out = decode_image(_encode(rgb, fmt))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert out[15, 5, 0] > 150 and out[15, 35, 2] > 150  # red left, blue right


def test_gif_gives_its_first_frame(rgb):
    second = Image.new("RGB", (40, 30), (0, 255, 0))
    data = _encode(rgb, "GIF", save_all=True, append_images=[second])
    out = decode_image(data)
    assert out[15, 5, 0] > 150 and out[15, 5, 1] < 100


def test_gray_palette_and_16_bit_become_rgb():
    gray = Image.fromarray(np.full((8, 8), 77, np.uint8))
    assert (decode_image(_encode(gray, "PNG")) == 77).all()
    pal = Image.fromarray(np.full((8, 8, 3), (10, 200, 30), np.uint8)).quantize(colors=4)
    assert tuple(decode_image(_encode(pal, "PNG"))[0, 0]) == (10, 200, 30)
    deep = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    out = decode_image(_encode(deep, "PNG"))
    assert out.shape == (8, 8, 3) and (out == 255).all()


def test_rgba_is_composited_on_white():
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255
    arr[:, :2, 3] = 255  # left half opaque red, right half transparent
    out = decode_image(_encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 3]) == (255, 255, 255)


def test_exif_orientation_is_applied(rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = decode_image(_encode(rgb, "JPEG", exif=exif))
    assert out.shape == (40, 30, 3)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_pixel_bomb_is_refused_from_the_header():
    with pytest.raises(PayloadTooLargeError, match="100000×100000"):
        decode_image(_png_header_only(100_000, 100_000))
    with pytest.raises(PayloadTooLargeError):
        decode_image(np.zeros((10, 10, 3), np.uint8), max_pixels=50)


@pytest.mark.parametrize("data", [b"", b"hello, not an image", _png_header_only(20, 20)[:40]])
def test_bad_bytes_give_a_clear_error(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_truncated_jpeg_is_reported(rgb):
    data = _encode(rgb.resize((400, 300)), "JPEG")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_paths_and_arrays(tmp_path, rgb):
    p = tmp_path / "x.png"
    rgb.save(p)
    assert read_image(p).shape == (30, 40, 3)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_image(tmp_path / "missing.png")
    assert decode_image(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    assert decode_image(np.ones((5, 6, 3), np.float32), scale=255).max() == 255
    with pytest.raises(InvalidInputError):
        decode_image(np.zeros((5, 6, 7), np.uint8))


@pytest.mark.parametrize("size", [(40, 30), (1500, 800)])
def test_encoded_panes_decode_to_the_same_pixels(size):
    from limner.imaging import encode_png

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3)).astype(np.uint8)
    arr[:, : size[0] // 2] = (10, 200, 30)  # flat areas as well as noise
    data = encode_png(arr)
    assert data.startswith(b"\x89PNG")
    assert np.array_equal(decode_image(data), arr)


def test_an_array_of_ambiguous_scale_is_refused_unless_its_scale_is_given():
    """Floats within [0, 1], negative values (a normalized tensor) and values over 255 are not
    guessed at: one line says what to give."""
    rng = np.random.default_rng(0)
    unit = rng.random((6, 5, 3)).astype(np.float32)
    with pytest.raises(InvalidInputError, match="ambiguous: give scale=255") as exc:
        decode_image(unit)
    assert "\n" not in str(exc.value)
    assert np.array_equal(decode_image(unit, scale=255), np.round(unit * 255).astype(np.uint8))
    normalized = (unit - 0.45) / 0.225
    with pytest.raises(InvalidInputError, match="normalized tensor"):
        decode_image(normalized)
    wide = (unit * 65535).astype(np.uint16)
    with pytest.raises(InvalidInputError, match="over 255"):
        decode_image(wide)
    assert abs(int(decode_image(wide, scale=255 / 65535).max()) - round(unit.max() * 255)) <= 1
    on_255 = (unit * 255).astype(np.float64)
    assert np.array_equal(decode_image(on_255), np.round(on_255).astype(np.uint8))
    assert decode_image(np.zeros((4, 4, 3), np.float32)).max() == 0  # black in any scale
    with pytest.raises(InvalidInputError, match="positive number"):
        decode_image(unit, scale=-1)
