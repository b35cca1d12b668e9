"""Gradient methods in the service: refused when the subscription is configured for a model
without gradients, and a Grad-CAM job with its saliency pane on the built-in model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image
from svc_helpers import Running, onnx_and_builtin

BLACK_BOX = "kernelshap, lime, occlusion, rise"
FAST = {"segmentation": "grid", "segments": 8, "baseline": "gray"}


@pytest.fixture(scope="module")
def ctx(shared: Running, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return onnx_and_builtin(shared, tmp_path_factory.mktemp("onnx"), "")


def _put(ctx: dict, sub_id: str, **body: object) -> httpx.Response:
    return ctx["http"].put(f"/v1/subscriptions/{sub_id}/explainability", json=body)


def _error(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "\n" not in message
    return str(message)


@pytest.mark.parametrize("method", ["integrated-gradients", "gradcam"])
def test_a_model_without_gradients_is_refused_when_configured(ctx, method) -> None:
    msg = _error(_put(ctx, ctx["onnx_sub"].id, method=method))
    assert "needs gradients" in msg and BLACK_BOX in msg
    external = ctx["client"].subscriptions.create(
        name=f"external-{method}", scoring_url="http://scoring.invalid/v2/models/m", labels=["a"]
    )
    assert BLACK_BOX in _error(_put(ctx, external.id, method=method))
    # the settings stay as they were
    stored = ctx["http"].get(f"/v1/subscriptions/{ctx['onnx_sub'].id}").json()
    assert stored["explainability"].get("method") != method


def test_an_override_to_a_gradient_method_is_refused_at_request_time(ctx, photo_png) -> None:
    assert _put(ctx, ctx["onnx_sub"].id, method="occlusion", **FAST).status_code == 200
    sid = ctx["client"].score(ctx["onnx_dep"], photo_png).scoring_id
    response = ctx["http"].post(
        "/v1/explanations", json={"scoring_id": sid, "method": "integrated-gradients"}
    )
    assert BLACK_BOX in _error(response)
    response = ctx["http"].post("/v1/explanations", json={"scoring_id": sid, "steps": 16})
    assert "gradient methods only" in _error(response)


@pytest.mark.parametrize(
    "body",
    [
        {"method": "gradcam", "layer": "../../../etc/passwd"},
        {"method": "gradcam", "layer": "x" * 201},
        {"method": "integrated-gradients", "steps": 10**9},
        {"method": "gradcam", "layer": "__class__"},
    ],
)
def test_attack_layer_and_steps_fields(ctx, body) -> None:
    """A layer is only ever looked up among the model's own module names; steps are bounded."""
    response = _put(ctx, ctx["builtin_sub"].id, **body)
    assert response.status_code == 422, response.text
    assert "passwd" not in json.dumps(response.json()).replace(body.get("layer", ""), "")


def test_gradcam_job_has_a_saliency_pane(ctx, photo_png, tmp_path: Path) -> None:
    response = _put(ctx, ctx["builtin_sub"].id, method="gradcam", **FAST)
    assert response.status_code == 200, response.text
    assert response.json()["explainability"]["method"] == "gradcam"
    msg = _error(_put(ctx, ctx["builtin_sub"].id, method="gradcam", layer="nope"))
    assert "its layers: " in msg and "_conv_head" in msg
    sid = ctx["client"].score(ctx["builtin"], photo_png).scoring_id
    exp = ctx["client"].explanations.create(sid).wait(timeout=600)
    assert exp.status == "finished", exp.error
    result = exp.result
    assert result["method"] == "gradcam" and result["layer"]
    entry = result["explanations"][0]
    assert set(entry["images"]) == {
        "positive", "negative", "heatmap", "regions", "saliency", "labels"
    }  # fmt: skip
    png = exp.image("saliency")
    assert Image.open(io.BytesIO(png)).size == (result["width"], result["height"])
    saved = exp.save(tmp_path / "saved")
    assert any(p.name.endswith("-saliency.png") for p in saved.iterdir())
