"""Open Inference routes, uploads, remote models reading limner's metadata, predictions forms."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from svc_helpers import Running

from limner.client import APIClient
from limner.models.remote import RemoteModel
from limner.models.zoo import efficientnet_lite0_metadata, efficientnet_lite0_onnx
from limner.protocol import HEADER_LENGTH, from_raw, pack_binary, to_raw, unpack_binary


@pytest.fixture(scope="module")
def ctx(shared: Running):
    key = shared.new_key("inference")
    client = APIClient(shared.url, api_key=key)
    dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
    sub = client.subscriptions.create(deployment_id=dep.id)
    http = httpx.Client(base_url=shared.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    yield {"key": key, "client": client, "http": http, "dep": dep, "sub": sub}
    http.close()
    client.close()


def test_v2_infer_uint8_and_bytes(ctx, photo_png: bytes, lite0) -> None:
    http = ctx["http"]
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2/models/imagenet/ready").json()["ready"] is True
    meta = http.get("/v2/models/imagenet").json()
    assert meta["parameters"]["limner_model"]["labels"][285] == "Egyptian cat"
    assert meta["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}

    pixels = np.random.default_rng(1).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    body = {
        "inputs": [
            {
                "name": "image",
                "shape": [2, 50, 70, 3],
                "datatype": "UINT8",
                "data": pixels.reshape(-1).tolist(),
            }
        ]
    }
    out = http.post("/v2/models/imagenet/infer", json=body).json()
    outputs = {o["name"]: o for o in out["outputs"]}
    probs = np.asarray(outputs["probability"]["data"], np.float32).reshape(2, 1000)
    np.testing.assert_allclose(probs, lite0.predict_images(list(pixels)), atol=1e-4)
    assert outputs["prediction_classes"]["datatype"] == "INT64"
    assert outputs["prediction"]["data"][0] == lite0.labels[int(probs[0].argmax())]
    assert len(out["parameters"]["scoring_ids"]) == 2 and all(out["parameters"]["scoring_ids"])

    b64 = base64.b64encode(photo_png).decode()
    body = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}],
        "outputs": [{"name": "prediction"}],
    }
    out = http.post(f"/v2/models/{ctx['dep'].id}/infer", json=body).json()
    assert [o["name"] for o in out["outputs"]] == ["prediction"]
    assert out["outputs"][0]["data"] == ["Egyptian cat"]


def test_v2_binary_tensors_both_ways(ctx, photo_png: bytes, lite0) -> None:
    http = ctx["http"]
    assert "binary_tensor_data" in http.get("/v2").json()["extensions"]
    pixels = np.random.default_rng(3).integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
    message = {
        "id": "b1",
        "inputs": [{"name": "image", "shape": [2, 40, 60, 3], "datatype": "UINT8"}],
        "parameters": {"binary_data_output": True},
    }
    body, length = pack_binary(message, "inputs", {"image": to_raw("UINT8", pixels)})
    resp = http.post(  # no Content-Type, like tritonclient
        "/v2/models/imagenet/infer", content=body, headers={HEADER_LENGTH: str(length)}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    out, raws = unpack_binary(resp.content, int(resp.headers[HEADER_LENGTH]), "outputs")
    assert out["id"] == "b1" and len(out["parameters"]["scoring_ids"]) == 2
    meta = {o["name"]: o for o in out["outputs"]}
    assert meta["probability"]["parameters"]["binary_data_size"] == 2 * 1000 * 4
    probs = from_raw("FP32", meta["probability"]["shape"], raws["probability"])
    np.testing.assert_allclose(probs, lite0.predict_images(list(pixels)), atol=1e-4)
    labels = [lite0.labels[int(i)].encode() for i in probs.argmax(axis=1)]
    assert from_raw("BYTES", [2], raws["prediction"]) == labels
    classes = from_raw("INT64", [2], raws["prediction_classes"])
    assert classes.tolist() == probs.argmax(axis=1).tolist()

    # BYTES in binary form (length-prefixed files); one output binary, one JSON
    message = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES"}],
        "outputs": [
            {"name": "probability", "parameters": {"binary_data": True}},
            {"name": "prediction"},
        ],
    }
    body, length = pack_binary(message, "inputs", {"image": to_raw("BYTES", [photo_png])})
    resp = http.post(
        "/v2/models/imagenet/infer",
        content=body,
        headers={HEADER_LENGTH: str(length), "content-type": "application/octet-stream"},
    )
    out, raws = unpack_binary(resp.content, int(resp.headers[HEADER_LENGTH]), "outputs")
    assert list(raws) == ["probability"]
    assert out["outputs"][1]["data"] == ["Egyptian cat"]
    assert int(from_raw("FP32", [1, 1000], raws["probability"]).argmax()) == 285


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
def test_v2_json_whatever_the_content_type(ctx, content_type: str | None) -> None:
    body = {
        "inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [9] * 192}]
    }
    headers = {"content-type": content_type} if content_type else {}
    resp = ctx["http"].post(
        "/v2/models/imagenet/infer", content=json.dumps(body).encode(), headers=headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json" and HEADER_LENGTH not in resp.headers
    assert len(resp.json()["outputs"][0]["data"]) == 1000


def test_predictions_accept_files_base64_and_pixels(ctx, photo_png: bytes) -> None:
    http, dep = ctx["http"], ctx["dep"]
    url = f"/v1/deployments/{dep.id}/predictions"
    files = [
        ("file", ("a.png", photo_png, "image/png")),
        ("file", ("b.png", photo_png, "image/png")),
    ]
    by_files = http.post(url, files=files).json()["predictions"]
    by_b64 = http.post(url, json={"images": [base64.b64encode(photo_png).decode()]}).json()
    pixels = np.zeros((20, 30, 3), np.uint8).tolist()
    by_pixels = http.post(url, json={"input_data": [{"values": pixels}]}).json()
    assert [p["label"] for p in by_files] == ["Egyptian cat"] * 2
    assert by_b64["predictions"][0]["label"] == "Egyptian cat"
    assert len(by_b64["predictions"][0]["probabilities"]) == 1000
    assert by_pixels["predictions"][0]["scoring_id"]
    tx = http.get(f"/v1/transactions/{by_pixels['predictions'][0]['scoring_id']}").json()
    assert (tx["width"], tx["height"]) == (30, 20)


def test_remote_model_reads_labels_from_limner(shared: Running, ctx, lite0) -> None:
    remote = RemoteModel(
        f"{shared.url}/v2/models/imagenet", headers={"Authorization": f"Bearer {ctx['key']}"}
    )
    assert remote.labels == lite0.labels and remote.input_size == (224, 224)
    x = np.random.default_rng(2).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(remote.predict(x), lite0.predict(x), atol=1e-4)
    before = len(ctx["sub"].transactions(limit=1000))
    remote.predict(x)  # the remote adapter asks not to be logged
    assert len(ctx["sub"].transactions(limit=1000)) == before
    remote.close()


def test_upload_onnx_and_zip(ctx, tmp_path: Path, photo_png: bytes) -> None:
    client = ctx["client"]
    onnx = efficientnet_lite0_onnx()
    meta = efficientnet_lite0_metadata().to_dict()
    dep = client.deployments.create(name="uploaded", file=onnx, metadata=meta)
    assert client.score(dep, photo_png).label == "Egyptian cat"

    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.write(onnx, "lite0/model.onnx")
        z.writestr("lite0/limner-model.json", json.dumps(meta))
    dep2 = client.deployments.create(name="zipped", file=archive)
    assert client.score(dep2, photo_png).label == "Egyptian cat"
    names = {d.name for d in client.deployments.list()}
    assert {"uploaded", "zipped", "imagenet"} <= names
    client.deployments.delete(dep)
    client.deployments.delete(dep2)
    assert {d.name for d in client.deployments.list()} == names - {"uploaded", "zipped"}


def test_delete_removes_subscription_and_transactions(ctx, photo_png: bytes) -> None:
    client = ctx["client"]
    dep = client.deployments.create(name="temporary", model="efficientnet-lite0")
    sub = client.subscriptions.create(deployment_id=dep.id)
    sid = client.score(dep, photo_png).scoring_id
    client.deployments.delete(dep)
    assert ctx["http"].get(f"/v1/subscriptions/{sub.id}").status_code == 404
    assert ctx["http"].get(f"/v1/transactions/{sid}").status_code == 404


def test_openapi_ui_and_health_are_open_metrics_keyed(shared: Running) -> None:
    spec = httpx.get(f"{shared.url}/openapi.json").json()
    assert "/v1/explanations/{explanation_id}" in spec["paths"]
    assert (
        "multipart/form-data" in spec["paths"]["/v1/deployments"]["post"]["requestBody"]["content"]
    )
    assert httpx.get(f"{shared.url}/ui").text.startswith("<!doctype html>")
    assert httpx.get(f"{shared.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{shared.url}/metrics").status_code == 401
    auth = {"Authorization": f"Bearer {shared.key}"}
    assert "limner_http_requests_total" in httpx.get(f"{shared.url}/metrics", headers=auth).text
