"""Bad input gets its documented status and a JSON error, never a 500 or a stack trace."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image
from svc_helpers import Running

from limner.client import APIClient, error_from_response
from limner.errors import (
    AuthenticationError,
    ConflictError,
    ImageDecodeError,
    NotFoundError,
    PayloadTooLargeError,
)
from limner.protocol import HEADER_LENGTH


@pytest.fixture(scope="module")
def setup(shared: Running):
    """A subscribed deployment with one transaction, in its own space."""
    key = shared.new_key("errors")
    client = APIClient(shared.url, api_key=key)
    dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
    sub = client.subscriptions.create(deployment_id=dep.id)
    pixels = np.full((64, 64, 3), 120, np.uint8)
    scoring_id = client.score(dep, pixels).scoring_id
    http = httpx.Client(base_url=shared.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    yield {"client": client, "http": http, "dep": dep, "sub": sub, "scoring_id": scoring_id}
    http.close()
    client.close()


def error_of(resp: httpx.Response, status: int) -> dict:
    """The error of ``resp``: ``{"code", "message"}`` on /v1, the protocol's shape on /v2."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert "Traceback" not in resp.text
    body = resp.json()["error"]
    if resp.request.url.path.startswith("/v2"):
        assert isinstance(body, str) and body, resp.text  # {"error": "<message>"}
        return {"code": None, "message": body}
    assert body["code"] and body["message"]
    return body


def test_corrupt_image_is_400(setup) -> None:
    http, dep = setup["http"], setup["dep"]
    url = f"/v1/deployments/{dep.id}/predictions"
    body = error_of(
        http.post(url, files=[("file", ("x.png", b"\x89PNG not really", "image/png"))]), 400
    )
    assert body["code"] == "invalid_image"
    error_of(http.post(url, json={"images": [base64.b64encode(b"garbage").decode()]}), 400)
    error_of(http.post(url, json={"images": ["***not base64***"]}), 400)
    error_of(
        http.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    with pytest.raises(ImageDecodeError):
        setup["client"].score(dep, b"GIF89a broken")


def test_wrong_tensor_shape_or_dtype_is_422(setup) -> None:
    http, dep = setup["http"], setup["dep"]
    infer = f"/v2/models/{dep.name}/infer"
    gray = {"name": "image", "shape": [1, 8, 8], "datatype": "UINT8", "data": [0] * 64}
    assert "[N, H, W, 3]" in error_of(http.post(infer, json={"inputs": [gray]}), 422)["message"]
    floats = {"name": "image", "shape": [1, 8, 8, 3], "datatype": "FP32", "data": [0.5] * 192}
    error_of(http.post(infer, json={"inputs": [floats]}), 422)
    short = {"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [0] * 10}
    error_of(http.post(infer, json={"inputs": [short]}), 400)
    error_of(http.post(infer, json={"inputs": "nope"}), 422)
    error_of(http.post(infer, json={"inputs": [gray], "outputs": [{"name": "logits"}]}), 422)
    error_of(http.post(infer, content=b"{not json"), 400)
    binary = {"name": "image", "shape": [1, 2, 2, 3], "datatype": "UINT8"}
    for size, extra, length in ((12, b"\0" * 11, None), (12, b"\0" * 13, None), (12, b"", "x")):
        header = json.dumps({"inputs": [binary | {"parameters": {"binary_data_size": size}}]})
        sent = {HEADER_LENGTH: length or str(len(header))}
        error_of(http.post(infer, content=header.encode() + extra, headers=sent), 400)
    pred = f"/v1/deployments/{dep.id}/predictions"
    error_of(http.post(pred, json={"input_data": [{"values": [[1, 2], [3, 4]]}]}), 422)
    error_of(http.post(pred, json={"input_data": [{"values": [[[300, 0, 0]]]}]}), 422)
    error_of(http.post(pred, json={"something": 1}), 422)
    error_of(http.post(pred, content=b"x", headers={"content-type": "text/plain"}), 415)


def test_oversized_body_is_413(setup) -> None:
    http, dep = setup["http"], setup["dep"]
    url = f"/v1/deployments/{dep.id}/predictions"
    big = b"\0" * (21 * 1024 * 1024)
    body = error_of(http.post(url, content=big, headers={"content-type": "image/png"}), 413)
    assert body["code"] == "payload_too_large" and "20 MB" in body["message"]

    def chunks():  # no Content-Length: the limit holds on the bytes actually sent
        for _ in range(21):
            yield b"\0" * (1024 * 1024)

    error_of(http.post(url, content=chunks(), headers={"content-type": "application/json"}), 413)
    v2 = error_of(http.post(f"/v2/models/{dep.name}/infer", content=big), 413)
    assert "20 MB" in v2["message"]


def test_pixel_bomb_is_413(setup) -> None:
    buf = io.BytesIO()
    Image.new("L", (9000, 5000)).save(buf, format="PNG")  # 45 MP in a small file
    assert len(buf.getvalue()) < 1024 * 1024
    body = error_of(
        setup["http"].post(
            f"/v1/deployments/{setup['dep'].id}/predictions",
            files=[("file", ("bomb.png", buf.getvalue(), "image/png"))],
        ),
        413,
    )
    assert "megapixels" in body["message"] and "LIMNER_MAX_PIXELS" in body["message"]
    with pytest.raises(PayloadTooLargeError):
        setup["client"].score(setup["dep"], buf.getvalue())


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1/deployments/nope"),
        ("DELETE", "/v1/deployments/nope"),
        ("POST", "/v1/deployments/nope/predictions"),
        ("GET", "/v1/subscriptions/nope"),
        ("GET", "/v1/subscriptions/nope/transactions"),
        ("PUT", "/v1/subscriptions/nope/explainability"),
        ("GET", "/v1/transactions/nope"),
        ("GET", "/v1/transactions/nope/image"),
        ("GET", "/v1/explanations/nope"),
        ("GET", "/v1/explanations/nope/images/0/positive.png"),
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("GET", "/no/such/route"),
    ],
)
def test_unknown_ids_are_404(setup, method: str, path: str) -> None:
    kwargs = {"json": {"enabled": True}} if method in ("PUT", "POST") else {}
    error_of(setup["http"].request(method, path, **kwargs), 404)


def test_client_reads_both_error_shapes(setup) -> None:
    http = setup["http"]
    v2 = error_from_response(http.get("/v2/models/nope"))
    assert isinstance(v2, NotFoundError) and v2.message == "no model 'nope'"
    v1 = error_from_response(http.get("/v1/deployments/nope"))
    assert isinstance(v1, NotFoundError) and v1.message == "no deployment 'nope'"


def test_unknown_scoring_id_is_404(setup) -> None:
    error_of(setup["http"].post("/v1/explanations", json={"scoring_id": "nope"}), 404)
    with pytest.raises(NotFoundError):
        setup["client"].transactions.get("nope")


def test_no_or_wrong_key_is_401(shared: Running, setup) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        for path in ("/v1/deployments", f"/v1/deployments/{setup['dep'].id}", "/v2/models/x"):
            body = error_of(httpx.get(shared.url + path, headers=headers), 401)
            assert body["code"] in ("unauthorized", None) and "key" in body["message"]
    with pytest.raises(AuthenticationError), APIClient(shared.url, api_key="wrong") as c:
        c.deployments.list()
    assert httpx.get(shared.url + "/healthz").status_code == 200
    error_of(httpx.get(shared.url + "/metrics"), 401)
    auth = {"Authorization": f"Bearer {shared.key}"}
    assert httpx.get(shared.url + "/metrics", headers=auth).status_code == 200


def test_other_space_ids_are_404(shared: Running, setup) -> None:
    other = httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {shared.new_key('intruder')}"}
    )
    dep, sub, sid = setup["dep"], setup["sub"], setup["scoring_id"]
    for path in (
        f"/v1/deployments/{dep.id}",
        f"/v1/subscriptions/{sub.id}",
        f"/v1/subscriptions/{sub.id}/transactions",
        f"/v1/transactions/{sid}",
        f"/v1/transactions/{sid}/image",
        f"/v2/models/{dep.name}",
    ):
        error_of(other.get(path), 404)
    error_of(other.post(f"/v1/deployments/{dep.id}/predictions", json={"images": []}), 404)
    error_of(other.delete(f"/v1/deployments/{dep.id}"), 404)
    error_of(other.post("/v1/explanations", json={"scoring_id": sid}), 404)
    error_of(other.post("/v1/subscriptions", json={"deployment_id": dep.id}), 404)
    assert other.get("/v1/deployments").json() == {"deployments": []}
    assert other.get("/v1/explanations").json()["explanations"] == []
    other.close()


def test_explanation_while_explainability_off_is_409(setup) -> None:
    body = error_of(
        setup["http"].post("/v1/explanations", json={"scoring_id": setup["scoring_id"]}), 409
    )
    assert "explainability" in body["message"]
    with pytest.raises(ConflictError):
        setup["client"].explanations.create(setup["scoring_id"])


def test_other_user_mistakes(setup) -> None:
    http, dep = setup["http"], setup["dep"]
    error_of(http.post("/v1/deployments", json={"name": "x"}), 422)
    error_of(http.post("/v1/deployments", json={"name": "x", "model": "/no/such.onnx"}), 403)
    error_of(
        http.post("/v1/deployments", json={"name": "imagenet", "model": "efficientnet-lite0"}), 409
    )
    error_of(http.post("/v1/subscriptions", json={"deployment_id": dep.id}), 409)
    error_of(http.post("/v1/subscriptions", json={"name": "ext"}), 422)
    error_of(
        http.put(f"/v1/subscriptions/{setup['sub'].id}/explainability", json={"method": "magic"}),
        422,
    )
    for bad in (-0.1, 1.0, "wide"):
        error_of(
            http.put(
                f"/v1/subscriptions/{setup['sub'].id}/explainability", json={"tie_tolerance": bad}
            ),
            422,
        )
        error_of(
            http.post(
                "/v1/explanations", json={"scoring_id": setup["scoring_id"], "tie_tolerance": bad}
            ),
            422,
        )
    error_of(http.get(f"/v1/subscriptions/{setup['sub'].id}/transactions?limit=0"), 422)
    error_of(http.post("/v1/explanations", json={"scoring_id": setup["scoring_id"], "x": 1}), 422)
    error_of(http.patch("/v1/deployments"), 405)
    upload = [("file", ("m.bin", b"abc", "application/octet-stream"))]
    error_of(http.post("/v1/deployments", data={"name": "up"}, files=upload), 415)
    upload = [("file", ("m.onnx", b"abc", "application/octet-stream"))]
    error_of(http.post("/v1/deployments", data={"name": "up"}, files=upload), 422)
