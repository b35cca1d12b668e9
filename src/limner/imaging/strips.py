"""Horizontal strips: how full-size images are walked without a second full-size copy.

A 40-megapixel photo is 120 MB as RGB, and every Pillow image made from it is 160 MB (Pillow
keeps RGB in four bytes a pixel). Steps that work pixel by pixel (format conversion, box
reduction, pane drawing, PNG filtering) therefore run over strips of rows of about
:data:`STRIP_PIXELS` pixels each, so their temporaries are a few megabytes whatever the photo.
"""

from __future__ import annotations

from collections.abc import Iterator

#: Pixels in one strip (rows × width): temporaries of a few MB, few enough strips that the
#: per-strip Python overhead is negligible.
STRIP_PIXELS = 1 << 20


def strip_rows(width: int, multiple: int = 1) -> int:
    """Rows per strip for an image ``width`` pixels wide (a multiple of ``multiple``)."""
    rows = max(1, STRIP_PIXELS // max(width, 1))
    return max(multiple, rows // multiple * multiple)


def row_ranges(height: int, width: int, multiple: int = 1) -> Iterator[tuple[int, int]]:
    """``(top, bottom)`` of each strip of an image, top to bottom; every ``top`` is a multiple
    of ``multiple``."""
    step = strip_rows(width, multiple)
    for top in range(0, height, step):
        yield top, min(height, top + step)
