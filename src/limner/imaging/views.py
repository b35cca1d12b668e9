"""Vertex-style views of an attribution map: the settings of Vertex Explainable AI's
``Visualization`` (type, polarity, clip percentiles, colour map, overlay) and their rendering.

A view is drawn from a photo and an attribution map of the same size (one float a pixel,
positive where the pixel pushed the class up):

1. **polarity** keeps the positive values (``positive``), the negated negative ones
   (``negative``) or the absolute values with their sign (``both``);
2. **clipping**: values above the ``clip_percent_upperbound`` percentile of those magnitudes are
   clipped to it, values below the ``clip_percent_lowerbound`` percentile are dropped (zero), and
   what is kept is scaled to 0..1 between the two;
3. **PIXELS** colours every kept pixel by the colour map; **OUTLINES** draws the inner outline of
   the kept area;
4. **overlay_type** says what lies under the colours: black (``NONE``), the photo
   (``ORIGINAL``), a gray copy (``GRAYSCALE``) or the photo where something is kept and black
   elsewhere (``MASK_BLACK``).

Every step is a per-pixel lookup or a separable filter, and :func:`render_view` draws any strip
of rows the same as the whole image (given the bounds and outline width of the whole image and
the rows its outlines depend on), so a view of a large photo can be drawn strip by strip.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from limner.errors import InvalidInputError
from limner.imaging.strips import row_ranges

TYPES = ("PIXELS", "OUTLINES")
POLARITIES = ("positive", "negative", "both")
#: Vertex's colour maps; ``PINK_WHITE_GREEN`` is matplotlib's ``PiYG`` (either name is taken).
COLOR_MAPS = ("PINK_GREEN", "VIRIDIS", "RED", "GREEN", "RED_GREEN", "PINK_WHITE_GREEN")
OVERLAYS = ("NONE", "ORIGINAL", "GRAYSCALE", "MASK_BLACK")
_ALIASES = {"PIYG": "PINK_WHITE_GREEN"}
#: Colour maps that show the sign of a value (positive one colour, negative another).
TWO_COLOUR = frozenset({"PINK_GREEN", "RED_GREEN", "PINK_WHITE_GREEN"})
#: How opaque the colours are over a photo overlay (over ``NONE`` they are drawn as they are).
OVERLAY_OPACITY = 0.6
#: The most pixels the clip percentiles are computed from (an even subsample of larger maps).
PERCENTILE_SAMPLES = 1 << 20
FIELDS = (
    "type",
    "polarity",
    "clip_percent_upperbound",
    "clip_percent_lowerbound",
    "color_map",
    "overlay_type",
)
#: The methods whose Vertex default is ``OUTLINES`` with ``PINK_GREEN`` (Vertex's Integrated
#: Gradients defaults); every other method's default view is Vertex's XRAI default.
OUTLINE_METHODS = frozenset({"integrated-gradients"})


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value).strip()
    for option in allowed:
        if text.upper() == option.upper():
            return option
    alias = _ALIASES.get(text.upper()) if name == "color_map" else None
    if alias is not None:
        return alias
    extra = " (or PiYG)" if name == "color_map" else ""
    raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}{extra}, not {text[:40]!r}")


def _percent(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{name} must be a number from 0 to 100, not {str(value)[:40]!r}"
        ) from None
    if isinstance(value, bool) or not 0.0 <= number <= 100.0:
        raise InvalidInputError(f"{name} must be a number from 0 to 100, not {value!r}")
    return number


@dataclass(frozen=True)
class ViewSettings:
    """How a view is drawn, with the names and values of Vertex's ``Visualization``.

    The defaults are Vertex's documented ones for XRAI (``PIXELS``, ``positive``, 99.9, 62,
    ``VIRIDIS``, ``NONE``); :meth:`default_for` gives Integrated Gradients' (``OUTLINES`` with
    ``PINK_GREEN``). Values are checked on construction (:class:`InvalidInputError` naming the
    field and what it may be); names are read case-insensitively.
    """

    type: str = "PIXELS"
    polarity: str = "positive"
    clip_percent_upperbound: float = 99.9
    clip_percent_lowerbound: float = 62.0
    color_map: str = "VIRIDIS"
    overlay_type: str = "NONE"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "type", _choice("type", self.type, TYPES))
        set_(self, "polarity", _choice("polarity", self.polarity, POLARITIES))
        set_(self, "color_map", _choice("color_map", self.color_map, COLOR_MAPS))
        set_(self, "overlay_type", _choice("overlay_type", self.overlay_type, OVERLAYS))
        upper = _percent("clip_percent_upperbound", self.clip_percent_upperbound)
        lower = _percent("clip_percent_lowerbound", self.clip_percent_lowerbound)
        if lower >= upper:
            raise InvalidInputError(
                f"clip_percent_lowerbound ({lower:g}) must be below "
                f"clip_percent_upperbound ({upper:g})"
            )
        set_(self, "clip_percent_upperbound", upper)
        set_(self, "clip_percent_lowerbound", lower)

    @classmethod
    def default_for(cls, method: str | None) -> ViewSettings:
        """Vertex's default view for a method: Integrated Gradients' (``OUTLINES``,
        ``PINK_GREEN``) for ``integrated-gradients``, XRAI's (``PIXELS``, ``VIRIDIS``) for the
        others."""
        if method in OUTLINE_METHODS:
            return cls(type="OUTLINES", color_map="PINK_GREEN")
        return cls()

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, base: ViewSettings | None = None
    ) -> ViewSettings:
        """Settings from a mapping of the field names (unknown names are refused; missing ones
        are ``base``'s, by default the class defaults). Vertex's camelCase names are read
        too."""
        base = cls() if base is None else base
        if values is None:
            return base
        if not isinstance(values, Mapping):
            raise InvalidInputError("a view must be an object of " + ", ".join(FIELDS))
        given: dict[str, Any] = {}
        for key, value in values.items():
            name = _snake(str(key))
            if name not in FIELDS:
                raise InvalidInputError(
                    f"unknown view setting {str(key)[:60]!r}; the settings are " + ", ".join(FIELDS)
                )
            if value is not None:
                given[name] = value
        return replace(base, **given)

    @classmethod
    def parse(cls, text: str, base: ViewSettings | None = None) -> ViewSettings:
        """Settings from ``name=value`` pairs separated by commas, as the CLI takes them
        (``type=PIXELS,polarity=both,color_map=VIRIDIS``)."""
        values: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise InvalidInputError(
                    f"a view setting must be name=value, not {part[:60]!r} "
                    "(for example type=PIXELS,polarity=both,color_map=VIRIDIS)"
                )
            if name.strip() in values:
                raise InvalidInputError(f"view setting {name.strip()!r} is given more than once")
            values[name.strip()] = value.strip()
        return cls.from_dict(values, base)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (the field names)."""
        return asdict(self)

    def query(self) -> str:
        """The settings as a URL query string (the view route's parameters)."""
        from urllib.parse import urlencode

        return urlencode(
            {k: f"{v:g}" if isinstance(v, float) else v for k, v in asdict(self).items()}
        )


def _snake(name: str) -> str:
    """``clipPercentUpperbound`` → ``clip_percent_upperbound`` (snake names stay as they are)."""
    out = [f"_{c.lower()}" if c.isupper() else c for c in name]
    return "".join(out).lstrip("_")


# ------------------------------------------------------------------------------------------
# stored maps

#: The most pixels a stored attribution map may have when it is read back.
MAX_STORED_MAP_PIXELS = 16_000_000


def encode_map(values: np.ndarray) -> bytes:
    """A float attribution map ``(H, W)`` as ``.npy`` bytes (float32, lossless for the
    float32 maps limner computes)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(values, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def decode_map(data: bytes) -> np.ndarray:
    """An attribution map stored by :func:`encode_map` (never unpickled; a stored map that is
    not a finite 2-D float map of at most ``MAX_STORED_MAP_PIXELS`` is refused)."""
    try:
        values = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"the stored attribution map cannot be read: {exc}") from None
    if (
        not isinstance(values, np.ndarray)
        or values.ndim != 2
        or values.dtype.kind != "f"
        or not 0 < values.size <= MAX_STORED_MAP_PIXELS
    ):
        raise ValueError("the stored attribution map is not a 2-D float map")
    return np.nan_to_num(values.astype(np.float32, copy=False))


# ------------------------------------------------------------------------------------------
# rendering


def magnitudes(values: np.ndarray, polarity: str) -> np.ndarray:
    """The values a polarity keeps, as magnitudes ≥ 0 (float32)."""
    v = np.asarray(values, dtype=np.float32)
    if polarity == "positive":
        return np.maximum(v, 0.0)
    if polarity == "negative":
        return np.maximum(-v, 0.0)
    return np.abs(v)


def clip_bounds(values: np.ndarray, settings: ViewSettings) -> tuple[float, float]:
    """``(low, high)``: the lower and upper clip percentiles of the magnitudes the polarity
    keeps, computed on an even subsample of at most :data:`PERCENTILE_SAMPLES` pixels."""
    v = np.asarray(values)
    step = max(1, int(np.ceil(np.sqrt(v.size / PERCENTILE_SAMPLES))))
    m = magnitudes(v[::step, ::step] if v.ndim == 2 else v[::step], settings.polarity)
    if m.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(
        m, [settings.clip_percent_lowerbound, settings.clip_percent_upperbound]
    )
    return float(low), float(high)


def outline_width(width: int, height: int) -> int:
    """Width in pixels of a view's outlines for an image of that size."""
    return max(1, round(max(width, height) / 300))


@lru_cache(maxsize=32)
def _table(color_map: str, sign: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour (256, 3) float32 and opacity (256,) float32 for a normalised value 0..1 in 256
    steps, of positive (``sign`` 1) or negative (-1) values."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    n = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    ones = np.ones(256, np.float32)
    if color_map == "VIRIDIS":
        return colormaps["viridis"](n)[:, :3].astype(np.float32) * 255, ones
    if color_map == "PINK_WHITE_GREEN":
        return colormaps["PiYG"](0.5 + 0.5 * sign * n)[:, :3].astype(np.float32) * 255, ones
    named = {
        "RED": ("red", "red"),
        "GREEN": ("lime", "lime"),
        "PINK_GREEN": ("limegreen", "deeppink"),
        "RED_GREEN": ("lime", "red"),
    }[color_map]
    colour = np.array(to_rgb(named[0] if sign > 0 else named[1]), np.float32) * 255
    return np.repeat(colour[None], 256, axis=0), n


def _gray(image: np.ndarray) -> np.ndarray:
    """A gray copy of an RGB uint8 image, still RGB (Pillow's ``L`` conversion)."""
    gray = np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"))
    return np.repeat(gray[..., None], 3, axis=2)


def _erode(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` whose whole (2·width+1)² square is in the mask (the edges of the
    array count as inside: they continue the nearest row or column)."""
    from scipy.ndimage import minimum_filter

    return minimum_filter(mask.view(np.uint8), size=2 * width + 1, mode="nearest").astype(bool)


def render_view(
    image: np.ndarray,
    attribution: np.ndarray,
    settings: ViewSettings,
    *,
    bounds: tuple[float, float] | None = None,
) -> np.ndarray:
    """The view of ``attribution`` (float ``(H, W)``) over ``image`` (RGB uint8 ``(H, W, 3)``),
    RGB uint8 ``(H, W, 3)``, drawn strip by strip (temporaries of a few MB at any size).
    ``bounds``: the clip bounds, by default :func:`clip_bounds` of this map."""
    values = np.asarray(attribution)
    _check(image, values)
    h, w = values.shape
    bounds = clip_bounds(values, settings) if bounds is None else bounds
    width = outline_width(w, h)
    out = np.empty((h, w, 3), np.uint8)
    for top, bottom in row_ranges(h, w):
        above, below = min(top, width), min(h - bottom, width)
        out[top:bottom] = view_rows(
            image[top - above : bottom + below],
            values[top - above : bottom + below],
            settings,
            bounds=bounds,
            outline=width,
            margin=(above, below),
        )
    return out


def _check(image: np.ndarray, values: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or values.shape != image.shape[:2]:
        raise InvalidInputError(
            f"a view needs an RGB image and an attribution map of the same size, not "
            f"{tuple(image.shape)} and {tuple(values.shape)}"
        )


def view_rows(
    image: np.ndarray,
    attribution: np.ndarray,
    settings: ViewSettings,
    *,
    bounds: tuple[float, float],
    outline: int,
    margin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Rows of a view: the same pixels as those rows of :func:`render_view` of the whole image,
    given the whole image's clip ``bounds`` and ``outline`` width. ``margin`` ``(above,
    below)`` are extra rows of both inputs that the outlines depend on (``outline`` rows where
    the image has them) and that the result leaves out."""
    values = np.asarray(attribution, dtype=np.float32)
    _check(image, values)
    h = values.shape[0]
    above, below = margin
    low, high = bounds
    m = magnitudes(values, settings.polarity)
    kept = (m > 0) & (m >= low)
    span = high - low
    n = np.clip((m - low) / span, 0.0, 1.0) if span > 0 else np.ones_like(m)
    index = np.where(kept, np.rint(n * 255), 0).astype(np.uint8)
    negative = (values < 0) if settings.polarity == "both" else None
    sign = -1 if settings.polarity == "negative" else 1

    rows = slice(above, h - below)
    if settings.type == "OUTLINES":
        width = outline
        if negative is not None and settings.color_map in TWO_COLOUR:
            pos, neg = kept & ~negative, kept & negative
            shown = (pos & ~_erode(pos, width)) | (neg & ~_erode(neg, width))
        else:
            shown = kept & ~_erode(kept, width)
        index = np.where(shown, 255, 0).astype(np.uint8)
        kept, shown = kept[rows], shown[rows]
    else:
        kept = kept[rows]
        shown = kept
    index = index[rows]
    neg_rows = negative[rows] if negative is not None else None

    colour, alpha = _table(settings.color_map, sign)
    rgb = colour[index]
    a = alpha[index]
    if neg_rows is not None and settings.color_map in TWO_COLOUR:
        ncolour, nalpha = _table(settings.color_map, -1)
        rgb = np.where(neg_rows[..., None], ncolour[index], rgb)
        a = np.where(neg_rows, nalpha[index], a)
    a = np.where(shown, a, 0.0)

    photo = image[rows]
    if settings.overlay_type == "NONE":
        under = np.zeros(photo.shape, np.float32)
    elif settings.overlay_type == "ORIGINAL":
        under = photo.astype(np.float32)
    elif settings.overlay_type == "GRAYSCALE":
        under = _gray(photo).astype(np.float32)
    else:  # MASK_BLACK
        under = np.where(kept[..., None], photo, 0).astype(np.float32)
    if settings.overlay_type != "NONE" and settings.type == "PIXELS":
        a = a * OVERLAY_OPACITY
    out = under * (1.0 - a[..., None]) + rgb * a[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
