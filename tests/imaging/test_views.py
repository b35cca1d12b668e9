"""Vertex-style views, pixel by pixel, on a synthetic attribution map with known values.

The map is a ramp from -1 (left column) to +1 (right column), the same on every row: the left
half pushes the class down, the right half up, and every percentile of it is known from the
columns. Each test reads the pixels a setting should change against the definition in
``limner.imaging.views`` (polarity, clip percentiles, colour map, outlines, overlay).
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from limner.errors import InvalidInputError
from limner.explain import Explanation
from limner.explain.metrics import Faithfulness
from limner.explain.result import ClassExplanation
from limner.explain.segmentation import region_map
from limner.imaging import strips as strips_module
from limner.imaging.views import (
    OVERLAY_OPACITY,
    ViewSettings,
    clip_bounds,
    magnitudes,
    outline_width,
    render_view,
)

H, W = 30, 120


@pytest.fixture(autouse=True)
def small_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strips_module, "STRIP_PIXELS", 600)  # 5 rows of these images


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(20, 236, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ramp() -> np.ndarray:
    return np.tile(np.linspace(-1.0, 1.0, W, dtype=np.float32), (H, 1))


def view(photo: np.ndarray, ramp: np.ndarray, **settings: object) -> np.ndarray:
    base = {"clip_percent_lowerbound": 0, "overlay_type": "NONE"}
    return render_view(photo, ramp, ViewSettings.from_dict({**base, **settings}))


def black(pixels: np.ndarray) -> np.ndarray:
    return np.all(pixels == 0, axis=-1)


# --- clipping -----------------------------------------------------------------------------


def test_values_above_the_upper_percentile_saturate(photo: np.ndarray, ramp: np.ndarray) -> None:
    out = view(photo, ramp, color_map="RED", clip_percent_upperbound=80)
    high = np.percentile(magnitudes(ramp, "positive"), 80)
    top = ramp >= high
    assert top.any() and (~top & (ramp > 0)).any()
    assert np.all(out[top] == [255, 0, 0])  # every clipped pixel at the top of the map
    below = (ramp > 0) & ~top
    assert np.all(out[below][:, 0] < 255)  # the rest are weaker
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0)  # rising with the value


def test_values_below_the_lower_percentile_are_off(photo: np.ndarray, ramp: np.ndarray) -> None:
    out = view(photo, ramp, color_map="VIRIDIS", clip_percent_lowerbound=80)
    low = np.percentile(magnitudes(ramp, "positive"), 80)
    assert np.all(black(out[ramp < low]))
    kept = ramp >= low
    assert kept.any() and not np.any(black(out[kept]))
    # kept values are scaled between the two bounds: the weakest near the bottom of the colour
    # map, the strongest at its top
    first = int(np.argmax(kept[0]))
    high = np.percentile(magnitudes(ramp, "positive"), 99.9)
    n = (ramp[0, first] - low) / (high - low)
    assert n < 0.05
    expected_low = np.rint(np.array(colormaps["viridis"](int(np.rint(n * 255)))[:3]) * 255)
    expected_high = np.rint(np.array(colormaps["viridis"](1.0)[:3]) * 255)
    assert np.abs(out[0, first].astype(int) - expected_low).max() <= 1
    assert np.abs(out[0, -1].astype(int) - expected_high).max() <= 1


def test_clip_bounds_subsample_large_maps() -> None:
    values = np.tile(np.linspace(0, 1, 3000, dtype=np.float32), (1500, 1))
    low, high = clip_bounds(values, ViewSettings(clip_percent_lowerbound=50))
    assert abs(low - 0.5) < 0.01 and abs(high - 0.999) < 0.01


# --- polarity -----------------------------------------------------------------------------


def test_negative_polarity_shows_nothing_where_values_are_positive(
    photo: np.ndarray, ramp: np.ndarray
) -> None:
    out = view(photo, ramp, polarity="negative", color_map="RED")
    assert np.all(black(out[ramp >= 0]))
    assert np.all(out[:, 0] == [255, 0, 0])  # the most negative column at the top


def test_positive_polarity_shows_nothing_where_values_are_negative(
    photo: np.ndarray, ramp: np.ndarray
) -> None:
    out = view(photo, ramp, polarity="positive", color_map="GREEN")
    assert np.all(black(out[ramp <= 0]))
    assert not np.any(black(out[:, -5:]))


def test_both_polarities_show_the_sign_in_two_colour_maps(
    photo: np.ndarray, ramp: np.ndarray
) -> None:
    out = view(photo, ramp, polarity="both", color_map="RED_GREEN")
    assert np.all(out[:, -1] == [0, 255, 0])  # strongest positive: green
    assert np.all(out[:, 0] == [255, 0, 0])  # strongest negative: red
    left, right = out[:, : W // 2].astype(int), out[:, W // 2 :].astype(int)
    assert np.all(left[..., 1] == 0) and np.all(right[..., 0] == 0)
    # one-sided maps show |value| whatever the sign
    mono = view(photo, ramp, polarity="both", color_map="RED")
    assert np.array_equal(mono[:, 0], mono[:, -1])
    assert np.array_equal(mono[:, :10], mono[:, ::-1][:, :10])


# --- colour maps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("color_map", "positive", "negative"),
    [
        ("PINK_GREEN", "green", "pink"),
        ("RED_GREEN", "green", "red"),
        ("PiYG", "green", "pink"),
        ("PINK_WHITE_GREEN", "green", "pink"),
        ("RED", "red", "red"),
        ("GREEN", "green", "green"),
        ("VIRIDIS", "yellow", "yellow"),
    ],
)
def test_colour_maps_have_the_right_hue_at_the_extremes(
    photo: np.ndarray, ramp: np.ndarray, color_map: str, positive: str, negative: str
) -> None:
    out = view(photo, ramp, polarity="both", color_map=color_map).astype(int)

    def hue(px: np.ndarray) -> str:
        r, g, b = px
        if g > r + 40 and g > b + 40:
            return "green"
        if r > g + 60 and b > g + 20:
            return "pink"
        if r > g + 100 and r > b + 100:
            return "red"
        if r > 150 and g > 150 and b < 100:
            return "yellow"
        return f"other {px}"

    assert hue(out[0, -1]) == positive
    assert hue(out[0, 0]) == negative


def test_viridis_matches_matplotlib(photo: np.ndarray, ramp: np.ndarray) -> None:
    out = view(photo, ramp, color_map="VIRIDIS")
    m = magnitudes(ramp, "positive")
    low, high = np.percentile(m, [0, 99.9])
    n = np.clip((m - low) / (high - low), 0, 1)
    kept = m > 0
    expected = np.rint(colormaps["viridis"](np.rint(n * 255).astype(int))[..., :3] * 255)
    assert np.abs(out[kept].astype(int) - expected[kept]).max() <= 1


# --- outlines -----------------------------------------------------------------------------


def test_outlines_only_at_the_boundary_of_the_kept_area(
    photo: np.ndarray, ramp: np.ndarray
) -> None:
    out = view(photo, ramp, type="OUTLINES", color_map="GREEN", clip_percent_lowerbound=75)
    low = np.percentile(magnitudes(ramp, "positive"), 75)
    kept = ramp >= low
    first = int(np.argmax(kept[0]))
    width = outline_width(W, H)
    drawn = ~black(out)
    assert drawn.any()
    assert not np.any(drawn & ~kept)  # nothing outside the kept area
    cols = np.nonzero(drawn.any(axis=0))[0]
    # only the inner edge next to the dropped area: the image's own borders are no boundary
    assert cols.min() == first and cols.max() == first + width - 1
    assert np.all(drawn[:, first : first + width])
    assert np.all(out[drawn] == [0, 255, 0])


def test_outlines_of_both_signs(photo: np.ndarray, ramp: np.ndarray) -> None:
    out = view(photo, ramp, type="OUTLINES", polarity="both", color_map="RED_GREEN")
    drawn = ~black(out)
    cols = np.nonzero(drawn.any(axis=0))[0]
    # the positive area's edge (green) and the negative area's edge (red) meet in the middle
    assert list(cols) == [W // 2 - 1, W // 2]
    assert np.all(out[:, W // 2 - 1] == [255, 0, 0]) and np.all(out[:, W // 2] == [0, 255, 0])


def test_outlines_across_strips_match_one_strip(
    monkeypatch: pytest.MonkeyPatch, photo: np.ndarray
) -> None:
    rng = np.random.default_rng(1)
    blobs = np.asarray(
        Image.fromarray(rng.normal(size=(8, 16)).astype(np.float32), "F").resize(
            (W, H), Image.Resampling.BILINEAR
        )
    )
    settings = ViewSettings(type="OUTLINES", polarity="both", clip_percent_lowerbound=30)
    strips = render_view(photo, blobs, settings)
    monkeypatch.setattr(strips_module, "STRIP_PIXELS", 10**9)
    assert np.array_equal(strips, render_view(photo, blobs, settings))


# --- overlays -----------------------------------------------------------------------------


def test_overlays_under_the_colours(photo: np.ndarray, ramp: np.ndarray) -> None:
    settings = {"color_map": "VIRIDIS", "clip_percent_lowerbound": 50}
    low = np.percentile(magnitudes(ramp, "positive"), 50)
    kept, dropped = ramp >= low, ramp < low
    none = view(photo, ramp, overlay_type="NONE", **settings)
    original = view(photo, ramp, overlay_type="ORIGINAL", **settings)
    gray = view(photo, ramp, overlay_type="GRAYSCALE", **settings)
    mask = view(photo, ramp, overlay_type="MASK_BLACK", **settings)
    luma = np.asarray(Image.fromarray(photo).convert("L"))

    assert np.all(black(none[dropped]))
    assert np.array_equal(original[dropped], photo[dropped])
    assert np.array_equal(gray[dropped], np.repeat(luma[dropped][:, None], 3, axis=1))
    assert np.all(black(mask[dropped]))

    # kept pixels: the colour (as drawn on NONE) over the overlay at OVERLAY_OPACITY
    colour = none.astype(np.float64)
    a = OVERLAY_OPACITY

    def over(under: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(under * (1 - a) + colour * a + 0.5), 0, 255)

    for out, under in (
        (original, photo.astype(np.float64)),
        (gray, np.repeat(luma[..., None], 3, axis=2).astype(np.float64)),
        (mask, photo.astype(np.float64)),
    ):
        assert np.abs(out[kept].astype(int) - over(under)[kept]).max() <= 1


def test_outlines_over_the_photo_are_opaque(photo: np.ndarray, ramp: np.ndarray) -> None:
    out = view(photo, ramp, type="OUTLINES", overlay_type="ORIGINAL", color_map="RED")
    drawn = np.all(out == [255, 0, 0], axis=-1) & ~np.all(photo == [255, 0, 0], axis=-1)
    assert drawn.any()
    assert np.array_equal(out[~drawn], photo[~drawn])


# --- settings -----------------------------------------------------------------------------


def test_settings_read_vertex_names_in_any_case() -> None:
    s = ViewSettings.from_dict(
        {"type": "outlines", "polarity": "BOTH", "colorMap": "piyg", "overlayType": "grayscale"}
    )
    assert (s.type, s.polarity, s.color_map, s.overlay_type) == (
        "OUTLINES",
        "both",
        "PINK_WHITE_GREEN",
        "GRAYSCALE",
    )
    parsed = ViewSettings.parse("type=PIXELS, polarity=negative,clip_percent_lowerbound=10")
    assert parsed == ViewSettings(polarity="negative", clip_percent_lowerbound=10)
    assert ViewSettings.from_dict(ViewSettings(color_map="RED").to_dict()).color_map == "RED"
    assert ViewSettings.default_for("integrated-gradients").type == "OUTLINES"
    assert ViewSettings.default_for("kernelshap") == ViewSettings()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"type": "HEATMAP"}, ["type", "PIXELS", "OUTLINES"]),
        ({"polarity": "up"}, ["polarity", "positive", "negative", "both"]),
        ({"color_map": "jet"}, ["color_map", "VIRIDIS", "PINK_GREEN"]),
        ({"overlay_type": "blur"}, ["overlay_type", "MASK_BLACK"]),
        ({"clip_percent_upperbound": 101}, ["clip_percent_upperbound", "0 to 100"]),
        ({"clip_percent_lowerbound": "lots"}, ["clip_percent_lowerbound", "number"]),
        ({"clip_percent_lowerbound": 90, "clip_percent_upperbound": 80}, ["below"]),
        ({"colour": "red"}, ["unknown view setting", "color_map"]),
    ],
)
def test_bad_settings_name_the_field_and_the_allowed_values(
    values: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(InvalidInputError) as err:
        ViewSettings.from_dict(values)
    for word in words:
        assert word in err.value.message


@pytest.mark.parametrize("text", ["type", "type=", "=PIXELS", "type=PIXELS,type=OUTLINES"])
def test_bad_cli_strings(text: str) -> None:
    with pytest.raises(InvalidInputError):
        ViewSettings.parse(text)


def test_mismatched_sizes_are_refused(photo: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="same size"):
        render_view(photo, np.zeros((H, W + 1), np.float32), ViewSettings())


# --- explanations -------------------------------------------------------------------------


def _explanation(saliency: bool) -> Explanation:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    regions = region_map(image, "grid", 30)
    weights = rng.normal(size=regions.count)
    none = Faithfulness(0.0, 0.0, [], [], [], [])
    c = ClassExplanation("cat", 3, 0.5, 0.0, 1.0, weights, regions.count, none)
    method = "integrated-gradients" if saliency else "kernelshap"
    extra = {"saliency": {3: rng.normal(size=(16, 16)).astype(np.float32)}} if saliency else {}
    return Explanation(image, regions, "m", method, 0, "blur", 0, 0, 0.0, [], [c], **extra)


@pytest.mark.parametrize("saliency", [False, True])
def test_explanation_view_is_the_view_of_its_attribution_map(saliency: bool, tmp_path) -> None:
    exp = _explanation(saliency)
    settings = ViewSettings(polarity="both", color_map="PINK_GREEN", overlay_type="GRAYSCALE")
    values = exp.attribution_map(class_index=3)
    bounds = clip_bounds(exp.attribution_map(exp.height, exp.width, class_index=3), settings)
    expected = render_view(exp.image, values, settings, bounds=bounds)
    assert np.array_equal(exp.view(3, settings), expected)
    # the default view is the method's Vertex default
    default = ViewSettings.default_for(exp.method)
    assert np.array_equal(exp.view(3), exp.view(3, default))
    assert np.array_equal(exp.view(3, "type=OUTLINES"), exp.view(3, {"type": "OUTLINES"}))
    path = exp.save_view(3, settings, directory=tmp_path)
    assert path.name == "3-cat-view.png"
    assert np.array_equal(np.asarray(Image.open(path)), expected)
    with pytest.raises(KeyError):
        exp.view(4)


# --- Vertex metadata ----------------------------------------------------------------------


def test_vertex_metadata_maps_methods_steps_and_visualization() -> None:
    from limner.views import from_vertex_metadata

    xrai = from_vertex_metadata(
        {
            "explanation_metadata": {
                "inputs": {"img": {"visualization": {"clip_percent_lowerbound": 70}}}
            },
            "explanation_parameters": {"xrai_attribution": {"step_count": 50}},
        }
    )
    assert (xrai.method, xrai.steps) == ("xrai", 50)
    assert xrai.view == ViewSettings(clip_percent_lowerbound=70)  # XRAI's Vertex defaults
    ig = from_vertex_metadata(
        {
            "metadata": {
                "inputs": {"img": {"visualization": {"polarity": "POLARITY_UNSPECIFIED"}}}
            },
            "parameters": {"integratedGradientsAttribution": {"stepCount": 25}},
        }
    )
    assert (ig.method, ig.steps) == ("integrated-gradients", 25)
    assert ig.view == ViewSettings.default_for("integrated-gradients")
    bare = from_vertex_metadata({"inputs": {"x": {"visualization": {"colorMap": "PiYG"}}}})
    assert bare.method is None and bare.view.color_map == "PINK_WHITE_GREEN"


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"explanation_parameters": {"examples_attribution": {}}}, ["examples_attribution"]),
        ({"inputs": {"x": {"visualization": {"opacity": 1}}}}, ["opacity"]),
        ({"inputs": {"x": {"visualization": {"type": "BOXES"}}}}, ["type"]),
        ({"explanation_parameters": {"xrai_attribution": {"step_count": -1}}}, ["step_count"]),
        ({"inputs": []}, ["inputs"]),
    ],
)
def test_bad_vertex_metadata(doc: dict[str, object], words: list[str]) -> None:
    from limner.views import from_vertex_metadata

    with pytest.raises(InvalidInputError) as err:
        from_vertex_metadata(doc)
    for word in words:
        assert word in err.value.message
