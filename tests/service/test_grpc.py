"""The Open Inference gRPC service: scoring like ``/v2`` and the protocol's status codes for
every bad input of the HTTP tests (limner's own stubs, whose private descriptor pool lets them
share this process with any other copy of the protocol)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from svc_helpers import running

from limner.client import APIClient
from limner.protocol import grpc_predict_v2_pb2 as pb
from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc
from limner.protocol import to_raw
from limner.settings import Settings

Code = grpc.StatusCode
MAX_BODY = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def g(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A service with gRPC on a free port, a subscribed deployment, a stub and the key."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("grpc-data"),
        database_url="",
        workers=2,
        grpc_port=0,
        max_body_bytes=MAX_BODY,
    )
    with running(settings) as r:
        client = APIClient(r.url, api_key=r.key)
        dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
        client.subscriptions.create(deployment_id=dep.id)
        port = r.server.app.state.grpc_port
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)]
        )
        yield {"r": r, "stub": pb_grpc.GRPCInferenceServiceStub(channel), "key": r.key}
        channel.close()
        client.close()


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def uint8_input(pixels: np.ndarray, raw: bool) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="imagenet")
    tensor = req.inputs.add(name="image", datatype="UINT8", shape=list(pixels.shape))
    if raw:
        req.raw_input_contents.append(to_raw("UINT8", pixels))
    else:
        tensor.contents.uint_contents.extend(pixels.reshape(-1).tolist())
    return req


def bytes_input(files: list[bytes], raw: bool) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="imagenet")
    tensor = req.inputs.add(name="image", datatype="BYTES", shape=[len(files)])
    if raw:
        req.raw_input_contents.append(to_raw("BYTES", files))
    else:
        tensor.contents.bytes_contents.extend(files)
    return req


def test_health_and_metadata(g: dict) -> None:
    stub, md = g["stub"], auth(g["key"])
    assert stub.ServerLive(pb.ServerLiveRequest(), metadata=md).live
    assert stub.ServerReady(pb.ServerReadyRequest(), metadata=md).ready
    server = stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=md)
    assert server.name == "limner" and "binary_tensor_data" in server.extensions
    assert stub.ModelReady(pb.ModelReadyRequest(name="imagenet"), metadata=md).ready
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="imagenet"), metadata=md)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("image", "UINT8", [-1, -1, -1, 3])
    ]
    assert [t.name for t in meta.outputs] == ["probability", "prediction", "prediction_classes"]
    assert list(meta.outputs[0].shape) == [-1, 1000]


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_infer_pixels_and_files(g: dict, raw: bool, lite0, photo_png: bytes) -> None:
    stub, md = g["stub"], auth(g["key"])
    pixels = np.random.default_rng(4).integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    resp = stub.ModelInfer(uint8_input(pixels, raw), metadata=md)
    assert resp.model_name == "imagenet" and [o.name for o in resp.outputs] == [
        "probability",
        "prediction",
        "prediction_classes",
    ]
    if raw:
        assert len(resp.raw_output_contents) == 3
        probs = np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(2, 1000)
    else:
        assert not resp.raw_output_contents
        probs = np.asarray(resp.outputs[0].contents.fp32_contents, np.float32).reshape(2, 1000)
    np.testing.assert_allclose(probs, lite0.predict_images(list(pixels)), atol=1e-4)
    ids = json.loads(resp.parameters["scoring_ids"].string_param)
    assert len(ids) == 2 and all(ids)

    req = bytes_input([photo_png], raw)
    req.outputs.add(name="prediction")
    resp = stub.ModelInfer(req, metadata=md)
    if raw:
        assert resp.raw_output_contents[0] == to_raw("BYTES", [b"Egyptian cat"])
    else:
        assert list(resp.outputs[0].contents.bytes_contents) == [b"Egyptian cat"]
    tx = (
        g["r"].client().transactions.get(json.loads(resp.parameters["scoring_ids"].string_param)[0])
    )
    assert tx["label"] == "Egyptian cat"


def test_log_false_is_not_logged(g: dict) -> None:
    req = uint8_input(np.zeros((1, 8, 8, 3), np.uint8), raw=True)
    req.parameters["log"].bool_param = False
    resp = g["stub"].ModelInfer(req, metadata=auth(g["key"]))
    assert json.loads(resp.parameters["scoring_ids"].string_param) == [None]


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (9000, 5000)).save(buf, format="PNG")  # 45 MP in a small file
    return buf.getvalue()


def _request(kind: str) -> pb.ModelInferRequest:
    """Bad requests: the same mistakes as the HTTP error tests."""
    gray = np.zeros((1, 8, 8), np.uint8)
    if kind == "corrupt_file":
        return bytes_input([b"\x89PNG not really"], raw=False)
    if kind == "broken_length_prefix":
        req = bytes_input([], raw=False)
        req.inputs[0].shape[:] = [1]
        req.raw_input_contents.append(b"\x09\0\0\0abc")
        return req
    if kind == "gray_shape":
        return uint8_input(gray, raw=True)
    if kind == "fp32":
        req = pb.ModelInferRequest(model_name="imagenet")
        req.inputs.add(name="image", datatype="FP32", shape=[1, 2, 2, 3])
        req.inputs[0].contents.fp32_contents.extend([0.5] * 12)
        return req
    if kind == "short_raw":
        req = uint8_input(np.zeros((1, 8, 8, 3), np.uint8), raw=True)
        req.raw_input_contents[0] = b"\0" * 10
        return req
    if kind == "short_typed":
        req = uint8_input(np.zeros((1, 2, 2, 3), np.uint8), raw=False)
        del req.inputs[0].contents.uint_contents[5:]
        return req
    if kind == "out_of_range":
        req = uint8_input(np.zeros((1, 1, 1, 3), np.uint8), raw=False)
        req.inputs[0].contents.uint_contents[0] = 300
        return req
    if kind == "raw_count_mismatch":
        req = uint8_input(np.zeros((1, 1, 1, 3), np.uint8), raw=True)
        req.raw_input_contents.append(b"")
        return req
    if kind == "unknown_output":
        req = uint8_input(np.zeros((1, 1, 1, 3), np.uint8), raw=True)
        req.outputs.add(name="logits")
        return req
    if kind == "pixel_bomb":
        return bytes_input([_bomb()], raw=True)
    if kind == "body_too_large":
        return bytes_input([b"\0" * (MAX_BODY + 1024)], raw=True)
    if kind == "too_many_images":
        req = uint8_input(np.zeros((1, 1, 1, 3), np.uint8), raw=True)
        req.inputs[0].shape[:] = [10**6, 0, 0, 3]
        req.raw_input_contents[0] = b""
        return req
    if kind == "overflowing_shape":
        req = uint8_input(np.zeros((1, 1, 1, 3), np.uint8), raw=True)
        req.inputs[0].shape[:] = [2**62, 2**62, 4, 3]  # the product wraps to 0 in int64
        req.raw_input_contents[0] = b""
        return req
    if kind == "unknown_model":
        req = uint8_input(np.zeros((1, 1, 1, 3), np.uint8), raw=True)
        req.model_name = "nope"
        return req
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind,code,words",
    [
        ("corrupt_file", Code.INVALID_ARGUMENT, "image"),
        ("broken_length_prefix", Code.INVALID_ARGUMENT, "BYTES"),
        ("gray_shape", Code.INVALID_ARGUMENT, "[N, H, W, 3]"),
        ("fp32", Code.INVALID_ARGUMENT, "FP32"),
        ("short_raw", Code.INVALID_ARGUMENT, "bytes"),
        ("short_typed", Code.INVALID_ARGUMENT, "values"),
        ("out_of_range", Code.INVALID_ARGUMENT, "range"),
        ("raw_count_mismatch", Code.INVALID_ARGUMENT, "raw_input_contents"),
        ("unknown_output", Code.INVALID_ARGUMENT, "logits"),
        ("pixel_bomb", Code.RESOURCE_EXHAUSTED, "megapixels"),
        ("body_too_large", Code.RESOURCE_EXHAUSTED, ""),
        ("too_many_images", Code.INVALID_ARGUMENT, "at most 256"),
        ("overflowing_shape", Code.INVALID_ARGUMENT, "at most 256"),
        ("unknown_model", Code.NOT_FOUND, "nope"),
    ],
)
def test_bad_inputs_get_protocol_codes(g: dict, kind: str, code: Code, words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        g["stub"].ModelInfer(_request(kind), metadata=auth(g["key"]))
    assert info.value.code() == code, info.value.details()
    assert words in (info.value.details() or "")
    assert "Traceback" not in (info.value.details() or "")


@pytest.mark.parametrize(
    "metadata", [[], [("authorization", "Bearer wrong")], [("authorization", "Basic abc")]]
)
def test_no_or_wrong_key_is_unauthenticated(g: dict, metadata: list) -> None:
    stub = g["stub"]
    calls = [
        lambda: stub.ServerLive(pb.ServerLiveRequest(), metadata=metadata),
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="imagenet"), metadata=metadata),
        lambda: stub.ModelInfer(_request("gray_shape"), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == Code.UNAUTHENTICATED
        assert "key" in (info.value.details() or "")


def test_other_space_models_are_not_found(g: dict) -> None:
    other = auth(g["r"].new_key("grpc-intruder"))
    for call in (
        lambda: g["stub"].ModelReady(pb.ModelReadyRequest(name="imagenet"), metadata=other),
        lambda: g["stub"].ModelInfer(_request("gray_shape"), metadata=other),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == Code.NOT_FOUND


def test_http_service_does_not_import_grpc(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, limner, limner.service, limner.client\n"
        "from limner.service import create_app\n"
        "create_app()\n"
        "assert not [m for m in sys.modules if m.startswith(('grpc', 'limner.service.grpc'))]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=120)


def test_metrics_count_grpc_calls(g: dict) -> None:
    import httpx

    stub, md = g["stub"], auth(g["key"])
    stub.ModelInfer(uint8_input(np.zeros((1, 4, 4, 3), np.uint8), raw=True), metadata=md)
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(_request("fp32"), metadata=md)
    headers = {"Authorization": f"Bearer {g['key']}"}
    text = httpx.get(f"{g['r'].url}/metrics", headers=headers).text
    lines = [ln for ln in text.splitlines() if ln.startswith("limner_http_requests_total{")]
    grpc_lines = [ln for ln in lines if 'method="GRPC"' in ln and 'route="ModelInfer"' in ln]
    assert any('status="OK"' in ln for ln in grpc_lines)
    assert any('status="INVALID_ARGUMENT"' in ln for ln in grpc_lines)
