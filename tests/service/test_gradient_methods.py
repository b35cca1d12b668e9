"""Gradient methods in the service: refused when the subscription is configured for a model
without gradients, and a Grad-CAM job with its saliency pane on the built-in model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image
from svc_helpers import Running
from torch import nn

from limner.models import InputSpec, ModelMetadata

BLACK_BOX = "kernelshap, lime, occlusion, rise"
FAST = {"segmentation": "grid", "segments": 8, "baseline": "gray"}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def ctx(shared: Running, tmp_path_factory: pytest.TempPathFactory) -> dict:
    client = shared.client()
    http = httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {shared.key}"}, timeout=120
    )
    d = tmp_path_factory.mktemp("onnx")
    torch.onnx.export(
        Tiny(),
        torch.zeros(1, 3, 16, 16),
        str(d / "model.onnx"),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    meta = ModelMetadata(
        labels=["a", "b"], input=InputSpec(width=16, height=16), output="logits", name="tiny"
    ).to_dict()
    onnx_dep = client.deployments.create(name="tiny-onnx", file=d / "model.onnx", metadata=meta)
    builtin = client.deployments.create(name="lite0", model="efficientnet-lite0")
    return {
        "client": client,
        "http": http,
        "onnx_sub": client.subscriptions.create(deployment_id=onnx_dep.id),
        "onnx_dep": onnx_dep,
        "builtin_sub": client.subscriptions.create(deployment_id=builtin.id),
        "builtin": builtin,
    }


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
