"""``GET /v1/explanations/{id}/images/{class_index}/view.png``: Vertex-style views drawn from
what the service stored (photo, region map or pixel map, RESULT), and who may read them."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from svc_helpers import Running, deploy_onnx
from torch import nn

from limner.imaging.views import ViewSettings, render_view

FAST = {"segmentation": "grid", "segments": 8, "baseline": "gray", "samples": 16}
FULL = ViewSettings(polarity="both", clip_percent_lowerbound=0).to_dict()


class Bright(nn.Module):
    """Logits of "dark" and "bright" from the mean of the image: regions brighter than the
    gray baseline push "bright" up, darker ones down."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1) * 8.0


def _wait(http: httpx.Client, explanation_id: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        body = http.get(f"/v1/explanations/{explanation_id}").json()
        if body["status"] in ("finished", "failed"):
            assert body["status"] == "finished", body.get("error")
            return dict(body)
        time.sleep(0.1)
    raise AssertionError("the explanation did not finish")


def _explain(shared: Running, key: str, dep: Any, png: bytes) -> dict[str, Any]:
    sid = shared.client(key).score(dep, png).scoring_id
    http = httpx.Client(base_url=shared.url, headers={"Authorization": f"Bearer {key}"})
    queued = http.post("/v1/explanations", json={"scoring_id": sid})
    assert queued.status_code == 202, queued.text
    return _wait(http, queued.json()["id"])


@pytest.fixture(scope="module")
def ctx(
    shared: Running,
    tmp_path_factory: pytest.TempPathFactory,
    small_pngs: Callable[[int], list[bytes]],
) -> dict[str, Any]:
    """A region explanation (a tiny ONNX model, in its own space) and its keys."""
    space = "views"
    key = shared.new_key(space)
    http = httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {key}"}, timeout=300
    )
    d = tmp_path_factory.mktemp("onnx")
    dep = deploy_onnx(shared.client(key), "tiny", Bright(), d, labels=("dark", "bright"))
    sub = shared.client(key).subscriptions.create(deployment_id=dep.id)
    put = http.put(
        f"/v1/subscriptions/{sub.id}/explainability", json={"method": "kernelshap", **FAST}
    )
    assert put.status_code == 200, put.text
    photo = small_pngs(1)[0]
    exp = _explain(shared, key, dep, photo)
    return {
        "http": http,
        "key": key,
        "sub": sub.id,
        "exp": exp,
        "photo": np.asarray(Image.open(io.BytesIO(photo)).convert("RGB")),
        "class": exp["result"]["explanations"][0]["class_index"],
    }


def _url(ctx: dict[str, Any], class_index: int | None = None) -> str:
    ci = ctx["class"] if class_index is None else class_index
    return f"/v1/explanations/{ctx['exp']['id']}/images/{ci}/view.png"


def _pixels(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def _attribution(ctx: dict[str, Any]) -> np.ndarray:
    """The class's weights over the stored region map, from the public routes."""
    labels_png = ctx["http"].get(_url(ctx).replace("view.png", "labels.png")).content
    labels = np.asarray(Image.open(io.BytesIO(labels_png)))
    c = ctx["exp"]["result"]["explanations"][0]
    weights = np.zeros(c["total_features"], np.float32)
    for r in c["regions"]:
        weights[r["id"]] = r["weight"]
    return np.take(weights, labels)


def test_a_view_is_the_rendering_of_the_stored_explanation(ctx: dict[str, Any]) -> None:
    settings = ViewSettings(polarity="both", color_map="RED_GREEN", overlay_type="ORIGINAL")
    response = ctx["http"].get(_url(ctx), params=settings.to_dict())
    expected = render_view(ctx["photo"], _attribution(ctx), settings)
    assert np.array_equal(_pixels(response), expected)
    assert response.headers["cache-control"] == "private, max-age=86400"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "OUTLINES"),
        ("polarity", "positive"),
        ("clip_percent_upperbound", 50),
        ("clip_percent_lowerbound", 60),
        ("color_map", "PINK_GREEN"),
        ("overlay_type", "GRAYSCALE"),
    ],
)
def test_every_setting_changes_the_pixels(ctx: dict[str, Any], field: str, value: object) -> None:
    base = _pixels(ctx["http"].get(_url(ctx), params=FULL))
    changed = _pixels(ctx["http"].get(_url(ctx), params={**FULL, field: value}))
    assert base.shape == changed.shape == ctx["photo"].shape
    assert not np.array_equal(base, changed)


def test_the_subscription_default_view(ctx: dict[str, Any]) -> None:
    http = ctx["http"]
    view = {"type": "outlines", "color_map": "red"}
    put = http.put(
        f"/v1/subscriptions/{ctx['sub']}/explainability",
        json={"method": "kernelshap", **FAST, "view": view},
    )
    assert put.status_code == 200, put.text
    assert put.json()["explainability"]["view"] == {"type": "OUTLINES", "color_map": "RED"}
    default = http.get(_url(ctx))
    assert default.headers["cache-control"] == "private, no-cache"
    explicit = ViewSettings(type="OUTLINES", color_map="RED").to_dict()
    assert np.array_equal(_pixels(default), _pixels(http.get(_url(ctx), params=explicit)))
    bad = http.put(
        f"/v1/subscriptions/{ctx['sub']}/explainability",
        json={"method": "kernelshap", "view": {"color_map": "jet"}},
    )
    assert bad.status_code == 422 and "color_map" in bad.text
    unknown = http.put(
        f"/v1/subscriptions/{ctx['sub']}/explainability", json={"view": {"colour": "RED"}}
    )
    assert unknown.status_code == 422


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"type": "HEATMAP"}, ["type", "PIXELS", "OUTLINES"]),
        ({"polarity": "sideways"}, ["polarity", "both"]),
        ({"color_map": "jet"}, ["color_map", "VIRIDIS"]),
        ({"overlay_type": "blur"}, ["overlay_type", "MASK_BLACK"]),
        ({"clip_percent_upperbound": "200"}, ["clip_percent_upperbound"]),
        ({"clip_percent_lowerbound": "lots"}, ["clip_percent_lowerbound"]),
        ({"clip_percent_lowerbound": 90, "clip_percent_upperbound": 80}, ["below"]),
        ({"colour": "RED"}, ["unknown query parameter", "color_map"]),
    ],
)
def test_bad_and_unknown_parameters_are_422(
    ctx: dict[str, Any], params: dict[str, object], words: list[str]
) -> None:
    response = ctx["http"].get(_url(ctx), params=params)
    assert response.status_code == 422, response.text
    for word in words:
        assert word in response.text


def test_a_repeated_parameter_is_422(ctx: dict[str, Any]) -> None:
    response = ctx["http"].get(_url(ctx) + "?type=PIXELS&type=OUTLINES")
    assert response.status_code == 422 and "more than once" in response.text


def test_a_class_that_was_not_explained_is_404(ctx: dict[str, Any]) -> None:
    assert ctx["http"].get(_url(ctx, 1 - ctx["class"])).status_code == 404


def test_attack_another_space_cannot_read_views(shared: Running, ctx: dict[str, Any]) -> None:
    other = shared.new_key("views-other")
    with httpx.Client(base_url=shared.url, headers={"Authorization": f"Bearer {other}"}) as http:
        response = http.get(_url(ctx), params=FULL)
        assert response.status_code == 404
        assert ctx["exp"]["id"] not in response.text.replace(f"'{ctx['exp']['id']}'", "")
        assert http.get(_url(ctx)).status_code == 404
    with httpx.Client(base_url=shared.url) as anonymous:
        assert anonymous.get(_url(ctx)).status_code == 401


def test_a_viewer_may_read_views(shared: Running, ctx: dict[str, Any]) -> None:
    viewer = shared.new_key("views", role="viewer")
    with httpx.Client(base_url=shared.url, headers={"Authorization": f"Bearer {viewer}"}) as http:
        assert _pixels(http.get(_url(ctx), params=FULL)).shape == ctx["photo"].shape


def test_the_client_fetches_views(shared: Running, ctx: dict[str, Any]) -> None:
    exp = shared.client(ctx["key"]).explanations.get(ctx["exp"]["id"])
    settings = {**FULL, "polarity": "both"}
    png = exp.view(ctx["class"], settings)
    direct = ctx["http"].get(_url(ctx), params=settings).content
    assert png == direct
    rest = {k: v for k, v in FULL.items() if k != "polarity"}
    assert exp.view(settings="polarity=both", **rest) == direct
    from limner.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="color_map"):
        exp.view(color_map="jet")


@pytest.mark.slow
def test_a_gradient_view_is_drawn_from_the_stored_pixel_map(
    shared: Running, photo_png: bytes, tmp_path: Path
) -> None:
    key = shared.new_key("views-gradients")
    http = httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {key}"}, timeout=600
    )
    dep = shared.client(key).deployments.create(name="lite0", model="efficientnet-lite0")
    sub = shared.client(key).subscriptions.create(deployment_id=dep.id)
    body = {"method": "integrated-gradients", "steps": 4, "segmentation": "grid", "segments": 4}
    assert http.put(f"/v1/subscriptions/{sub.id}/explainability", json=body).status_code == 200
    exp = _explain(shared, key, dep, photo_png)
    ci = exp["result"]["explanations"][0]["class_index"]
    url = f"/v1/explanations/{exp['id']}/images/{ci}/view.png"
    settings = {**FULL, "polarity": "both", "color_map": "RED_GREEN"}
    view = _pixels(http.get(url, params=settings))
    labels = np.asarray(Image.open(io.BytesIO(http.get(url.replace("view", "labels")).content)))
    # pixel attributions, not one weight per region: a region holds many colours
    region = view[labels == labels[labels.shape[0] // 2, labels.shape[1] // 2]]
    assert len(np.unique(region, axis=0)) > 10
    # the default view of Integrated Gradients is Vertex's: outlines
    default = _pixels(http.get(url))
    assert not np.array_equal(default, view)


# --- the dashboard --------------------------------------------------------------------------


def _dashboard(url: str, key: str) -> httpx.Client:
    """An httpx client with a dashboard session of ``key``."""
    import re

    http = httpx.Client(base_url=url, timeout=60)
    page = http.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    response = http.post("/ui/login", data={"key": key, "csrf": csrf.group(1)})
    assert response.status_code == 303, response.text
    return http


def test_the_dashboard_shows_and_switches_views(shared: Running, ctx: dict[str, Any]) -> None:
    http = _dashboard(shared.url, ctx["key"])
    exp_id, ci = ctx["exp"]["id"], ctx["class"]
    page = http.get(f"/ui/explanations/{exp_id}")
    assert page.status_code == 200
    assert 'id="view-form"' in page.text and 'id="view-pane"' in page.text
    ui_view = f"/ui/explanations/{exp_id}/images/{ci}/view.png"
    assert f'src="{ui_view}?' in page.text
    settings = {**FULL, "color_map": "RED_GREEN"}
    # the form's GET (no JS) selects the settings it was sent
    chosen = http.get(f"/ui/explanations/{exp_id}", params=settings).text
    assert "<option selected>RED_GREEN</option>" in chosen
    assert ViewSettings.from_dict(settings).query().replace("&", "&amp;") in chosen
    # the page's image is the API's view, under the dashboard session
    assert (
        http.get(ui_view, params=settings).content
        == ctx["http"].get(_url(ctx), params=settings).content
    )
    bad = http.get(f"/ui/explanations/{exp_id}", params={"color_map": "jet"})
    assert bad.status_code == 200 and "color_map must be one of" in bad.text
    assert http.get(ui_view, params={"color_map": "jet"}).status_code == 422
    assert http.get(ui_view, params={"colour": "RED"}).status_code == 422


def test_attack_another_space_cannot_see_dashboard_views(
    shared: Running, ctx: dict[str, Any]
) -> None:
    other = _dashboard(shared.url, shared.new_key("views-elsewhere"))
    exp_id, ci = ctx["exp"]["id"], ctx["class"]
    assert other.get(f"/ui/explanations/{exp_id}/images/{ci}/view.png").status_code == 404
    assert other.get(f"/ui/explanations/{exp_id}/images/{ci}/view.png?colour=x").status_code == 404
    anonymous = httpx.Client(base_url=shared.url)
    response = anonymous.get(f"/ui/explanations/{exp_id}/images/{ci}/view.png")
    assert (
        response.status_code in (303, 401) and response.headers.get("content-type") != "image/png"
    )


def test_attack_a_view_is_never_drawn_larger_than_the_cap(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """However large the stored photo, a view is drawn at most ``VIEW_MAX_SIDE`` pixels on its
    longer side (here lowered to 8, below the photo's size)."""
    from limner.imaging.transform import fit_within
    from limner.service.core import vertex_views

    h, w = ctx["photo"].shape[:2]
    assert max(h, w) > 8
    monkeypatch.setattr(vertex_views, "VIEW_MAX_SIDE", 8)
    drawn = _pixels(ctx["http"].get(_url(ctx), params={**FULL, "color_map": "VIRIDIS"}))
    assert drawn.shape[:2] == fit_within(w, h, 8)[::-1]
