"""XRAI in the service: a subscription explained with ``xrai`` on the built-in model, refused on
a model without gradients, and its bounded fields."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from svc_helpers import Running, onnx_and_builtin


@pytest.fixture(scope="module")
def ctx(shared: Running, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return onnx_and_builtin(shared, tmp_path_factory.mktemp("onnx"), "-xrai")


def _put(ctx: dict, sub_id: str, **body: object) -> httpx.Response:
    return ctx["http"].put(f"/v1/subscriptions/{sub_id}/explainability", json=body)


def test_xrai_on_a_model_without_gradients_is_refused(ctx) -> None:
    response = _put(ctx, ctx["onnx_sub"].id, method="xrai")
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "xrai needs gradients" in message and "\n" not in message


@pytest.mark.parametrize(
    "body",
    [
        {"method": "xrai", "steps": 10**9},
        {"method": "xrai", "steps": 1},
        {"method": "xrai", "layer": "__class__"},
        {"method": "xrai", "segments": 10**6},
        {"method": "XRAI"},
    ],
)
def test_attack_xrai_fields_are_bounded(ctx, body) -> None:
    """Steps and segments are bounded, a layer is refused (xrai reads none), names are exact."""
    response = _put(ctx, ctx["builtin_sub"].id, **body)
    assert response.status_code == 422, response.text


def test_an_xrai_job_on_the_builtin_model(ctx, photo_png) -> None:
    response = _put(ctx, ctx["builtin_sub"].id, method="xrai", steps=2, segments=8)
    assert response.status_code == 200, response.text
    assert response.json()["explainability"]["method"] == "xrai"
    sid = ctx["client"].score(ctx["builtin"], photo_png).scoring_id
    exp = ctx["client"].explanations.create(sid).wait(timeout=600)
    assert exp.status == "finished", exp.error
    result = exp.result
    assert result["method"] == "xrai" and result["steps"] == 2
    assert result["segmentation"]["algorithm"] == "xrai"
    assert 2 <= result["segmentation"]["count"] <= 8
    entry = result["explanations"][0]
    assert entry["settled"] is None and "completeness_gap" in entry
    assert "saliency" in entry["images"] and "labels" in entry["images"]
    png = exp.image("saliency")
    assert Image.open(io.BytesIO(png)).size == (result["width"], result["height"])
