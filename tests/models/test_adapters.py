"""ONNX, TorchScript and remote adapters on small real models; metadata handling."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

import limner
from limner.errors import InvalidInputError, ModelError
from limner.models import METADATA_FILE, InputSpec, ModelMetadata, load_model
from limner.models.remote import RemoteModel, raw_pixels_spec
from limner.protocol import InferenceRequest, decode_tensor, encode_tensor


class RedVsBlue(torch.nn.Module):
    """Logit of 'red' = mean(red) - mean(blue) on [0, 1] NCHW input; one sigmoid output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2)))[:, None] * 10.0


def _meta(**kw) -> ModelMetadata:
    base = {
        "labels": ["blue", "red"],
        "input": InputSpec(width=32, height=32),
        "output": "logits",
        "problem_type": "binary",
        "name": "red-vs-blue",
    }
    base.update(kw)
    return ModelMetadata(**base)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((32, 32, 3), np.uint8)
    blue[..., 2] = 255
    return np.stack([red, blue])


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    torch.onnx.export(
        RedVsBlue(),
        torch.zeros(1, 3, 32, 32),
        str(d / "model.onnx"),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    _meta().write(d / METADATA_FILE)
    return d


def test_onnx_dir_and_file(onnx_dir, images):
    for spec in (onnx_dir, onnx_dir / "model.onnx"):
        model = load_model(spec)
        p = model.predict(images)
        assert p.shape == (2, 2)  # one sigmoid output became two classes
        assert p[0, 1] > 0.99 and p[1, 0] > 0.99
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)


def test_torchscript_matches_onnx(tmp_path, onnx_dir, images):
    torch.jit.save(torch.jit.script(RedVsBlue()), str(tmp_path / "m.pt"))
    _meta().write(tmp_path / METADATA_FILE)
    pt = load_model(tmp_path / "m.pt")
    np.testing.assert_allclose(pt.predict(images), load_model(onnx_dir).predict(images), atol=1e-5)


def test_explaining_an_onnx_model(onnx_dir):
    half = np.zeros((64, 64, 3), np.uint8)
    half[:, :32, 0] = 255  # left half red
    half[:, 32:, 2] = 255  # right half blue
    d = limner.explain(
        half,
        load_model(onnx_dir),
        method="kernelshap",
        segmentation="grid",
        segments=2,
        baseline="black",
        classes=["red"],
    ).to_dict()
    exp = d["explanations"][0]
    assert exp["positive_regions"] == [0] and exp["negative_regions"] == [1]


def test_metadata_errors(tmp_path, onnx_dir):
    with pytest.raises(InvalidInputError, match=r"limner-model\.json"):
        (tmp_path / "bare.onnx").write_bytes((onnx_dir / "model.onnx").read_bytes())
        load_model(tmp_path / "bare.onnx")
    (tmp_path / METADATA_FILE).write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_model(tmp_path / "bare.onnx")
    with pytest.raises(InvalidInputError, match="exactly two labels"):
        _meta(labels=["a", "b", "c"])
    with pytest.raises(InvalidInputError, match="not found"):
        load_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    _meta().write(tmp_path / METADATA_FILE)
    with pytest.raises(ModelError):
        load_model(tmp_path / "junk.onnx")


def test_metadata_round_trip():
    meta = _meta(extra={"artifact": "model.onnx"})
    again = ModelMetadata.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta


class _Server(ThreadingHTTPServer):
    model: limner.Model


class _Handler(BaseHTTPRequestHandler):
    """A minimal Open Inference endpoint serving one model, as a remote team would run it."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        m = self.server.model  # type: ignore[attr-defined]
        self._send(
            {
                "name": "rb",
                "platform": "test",
                "parameters": {"limner_model": m.metadata.to_dict()},
                "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}],
                "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 2]}],
            }
        )

    def do_POST(self) -> None:
        req = InferenceRequest.model_validate_json(
            self.rfile.read(int(self.headers["Content-Length"]))
        )
        pixels = decode_tensor(req.inputs[0])
        probs = self.server.model.predict(pixels)  # type: ignore[attr-defined]
        self._send(
            {"model_name": "rb", "outputs": [encode_tensor("probability", probs).model_dump()]}
        )


def test_remote_model_over_open_inference(onnx_dir, images):
    server = _Server(("127.0.0.1", 0), _Handler)
    server.model = load_model(onnx_dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v2/models/rb"
        remote = load_model(url)
        assert isinstance(remote, RemoteModel)
        assert remote.labels == ["blue", "red"] and remote.metadata.input == raw_pixels_spec(32, 32)
        np.testing.assert_allclose(remote.predict(images), server.model.predict(images), atol=1e-6)
        d = limner.explain(
            images[0],
            remote,
            method="occlusion",
            segmentation="grid",
            segments=4,
            baseline="black",
            classes=["red"],
        ).to_dict()
        assert d["model_evaluations"] > 4
        remote.close()
    finally:
        server.shutdown()
