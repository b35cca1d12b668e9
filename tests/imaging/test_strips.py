"""Full-size steps done strip by strip give the same pixels as doing them on the whole image.

Each test shrinks the strips to a few rows, so the small images here cross many strip
boundaries; the references are the whole-image Pillow and numpy operations.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image, ImageOps

from limner.errors import ImageDecodeError, PayloadTooLargeError
from limner.imaging import check_image, decode_image, encode_png
from limner.imaging import png as png_module
from limner.imaging import strips as strips_module
from limner.imaging.png import PngWriter, encode_png_strips
from limner.imaging.transform import reduce, resize


@pytest.fixture(autouse=True)
def small_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strips_module, "STRIP_PIXELS", 700)  # a few rows of these images


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 61×83 RGB image with smooth areas and noise."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:61, 0:83]
    arr = np.stack([x * 3, y * 4, (x + y) * 2], axis=2).astype(np.uint8)
    arr[20:40, 30:60] = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    return arr


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_row_ranges_cover_every_row_once_in_multiples() -> None:
    ranges = list(strips_module.row_ranges(1000, 100, multiple=3))
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(top % 3 == 0 for top, _ in ranges)
    assert list(strips_module.row_ranges(5, 10_000, multiple=4)) == [(0, 4), (4, 5)]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_match_pillows_transpose(photo: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(photo), "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    out = decode_image(data)
    assert out.flags.c_contiguous and out.flags.writeable
    assert np.array_equal(out, expected)
    assert check_image(data) == (expected.shape[1], expected.shape[0])


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "YCbCr"])
def test_modes_convert_like_a_whole_image_convert(photo: np.ndarray, mode: str) -> None:
    img = Image.fromarray(photo).convert(mode)
    expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(decode_image(img), expected)
    if mode in ("L", "P"):
        assert np.array_equal(decode_image(_encode(img, "PNG")), expected)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white_as_a_whole(photo: np.ndarray, mode: str) -> None:
    alpha = np.linspace(0, 255, photo.shape[1]).astype(np.uint8)[None, :].repeat(61, 0)
    rgba = Image.fromarray(np.dstack([photo, alpha]), "RGBA")
    if mode == "P":
        img = Image.fromarray(photo).quantize(16)
        img.info["transparency"] = 3
    else:
        img = rgba.convert(mode)
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, img.convert("RGBA")).convert("RGB"))
    assert np.array_equal(decode_image(_encode(img, "PNG")), expected)


def test_16_bit_and_float_images_scale_by_the_whole_range(photo: np.ndarray) -> None:
    deep = photo[..., 0].astype(np.uint16) * 200  # up to 51000
    expected = np.clip(deep / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = decode_image(_encode(Image.fromarray(deep), "PNG"))
    assert np.array_equal(out, np.repeat(expected[..., None], 3, axis=2))
    flt = photo[..., 1].astype(np.float32) * 7.5 - 300.0
    lo, hi = min(0.0, float(flt.min())), max(1.0, float(flt.max()))
    expected = np.clip((flt.astype(np.float64) - lo) / (hi - lo) * 255 + 0.5, 0, 255)
    out = decode_image(Image.fromarray(flt, "F"))
    assert np.array_equal(out[..., 2], expected.astype(np.uint8))


def test_arrays_convert_like_whole_array_arithmetic(photo: np.ndarray) -> None:
    unit = photo.astype(np.float32) / 255.0
    unit[5, 5, 0] = np.nan
    expected = np.clip(np.nan_to_num(unit * 255.0), 0, 255).round().astype(np.uint8)
    assert np.array_equal(decode_image(unit, scale=255), expected)
    rgba = np.dstack([photo, photo[..., :1]])
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    blended = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
    expected = np.clip(blended, 0, 255).round().astype(np.uint8)
    assert np.array_equal(decode_image(rgba), expected)
    assert np.array_equal(decode_image(photo[..., 0]), np.repeat(photo[..., :1], 3, axis=2))
    assert decode_image(photo) is photo  # already RGB uint8: no copy at all


@pytest.mark.parametrize("factor", [1, 2, 5, 7])
def test_reduce_in_strips_is_pillows_reduce(photo: np.ndarray, factor: int) -> None:
    expected = np.asarray(Image.fromarray(photo).reduce(factor))
    assert np.array_equal(np.asarray(reduce(photo, factor)), expected)


def test_large_shrinks_match_reducing_the_whole_image() -> None:
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (1201, 1733, 3), dtype=np.uint8)
    factor = min(1733 // (2 * 200), 1201 // (2 * 120))  # resize's integer step: 4
    whole = Image.fromarray(big).reduce(factor).resize((200, 120), Image.Resampling.BILINEAR)
    assert np.array_equal(resize(big, 200, 120), np.asarray(whole))


@pytest.mark.parametrize("pillow_max", [png_module.PILLOW_MAX_PIXELS, 0])
def test_streamed_png_has_the_pixels_of_its_strips(
    photo: np.ndarray, pillow_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(png_module, "PILLOW_MAX_PIXELS", pillow_max)
    strips = [photo[t:b] for t, b in strips_module.row_ranges(61, 83)]
    assert len(strips) > 5
    data = encode_png_strips(iter(strips), 83, 61)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), photo)
    assert np.array_equal(decode_image(encode_png(photo)), photo)


def test_png_writer_refuses_rows_that_do_not_fit(photo: np.ndarray) -> None:
    writer = PngWriter(83, 61, lambda _: None)
    with pytest.raises(ValueError):
        writer.add(photo[:, :40])
    writer.add(photo[:30])
    with pytest.raises(ValueError, match="61 rows, 30"):
        writer.close()


def test_check_image_reads_a_jpeg_at_an_eighth_and_refuses_what_decode_refuses(
    photo: np.ndarray,
) -> None:
    big = Image.fromarray(photo).resize((830, 610))
    data = _encode(big, "JPEG", quality=90)
    assert check_image(data) == (830, 610)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        check_image(data[: len(data) // 2])
    with pytest.raises(PayloadTooLargeError):
        check_image(data, max_pixels=1000)
    with pytest.raises(ImageDecodeError):
        check_image(b"not an image")
