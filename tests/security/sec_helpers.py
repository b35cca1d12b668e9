"""Helpers of the attack tests: a real ``limner serve``, a recording loopback service, a fake
remote model service, tiny real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import onnx
from fastapi import FastAPI
from onnx import TensorProto, helper, numpy_helper

from limner.protocol import InferenceRequest, InferenceResponse, decode_tensor, encode_tensor
from limner.service import EmbeddedServer
from limner.store import Database, create_key
from loopback import free_port, wait_healthy  # noqa: F401 (re-exported to the tests)

#: What the recording service answers: must never show up in an error limner gives.
SECRET_BODY = "SECRET-INTERNAL-BODY-7f3a"

#: Metadata of :func:`tiny_onnx` (brightness of 8×8 NCHW float images).
TINY_META = {
    "labels": ["dark", "bright"],
    "input": {"width": 8, "height": 8, "layout": "NCHW", "dtype": "float32", "scale": 1 / 255},
    "output": "probabilities",
    "problem_type": "binary",
}


#: Settings of the server under attack.
QUOTA_BYTES = 3_000_000
LOAD_TIMEOUT = 6.0
SLOW_SECONDS = 2.5
HANG_SECONDS = 10.0


def tiny_onnx(path: Path, *, padding_bytes: int = 0, domain: str = "") -> Path:
    """A real ONNX classifier: P(bright) from the mean of the image. ``padding_bytes`` of random
    (unused) weights make it bigger; ``domain`` puts its last operator in another domain."""
    w = np.array([[-8.0, 8.0]] * 3, np.float32) / 3
    b = np.array([4.0, -4.0], np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    if padding_bytes:
        pad = np.random.default_rng(0).standard_normal(padding_bytes // 4).astype(np.float32)
        inits.append(numpy_helper.from_array(pad, "padding"))
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probability"], axis=1, domain=domain),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    opsets = [helper.make_opsetid("", 13)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def model_zip(path: Path, files: dict[str, bytes | Path], meta: dict | None = None) -> Path:
    """A model directory as a .zip: ``files`` plus ``limner-model.json``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            z.writestr(name, content.read_bytes() if isinstance(content, Path) else content)
        z.writestr("limner-model.json", json.dumps(meta or TINY_META))
    return path


@dataclass
class Recorder:
    """A loopback HTTP service that records every request and answers 500 with a secret."""

    url: str
    port: int
    seen: list[str] = field(default_factory=list)


@contextmanager
def recorder(redirect_to: str | None = None) -> Iterator[Recorder]:
    """Run a :class:`Recorder` for the block (answering 302 to ``redirect_to`` when given)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            body = SECRET_BODY.encode()
            self.send_response(500 if redirect_to is None else 302)
            if redirect_to is not None:
                self.send_header("Location", redirect_to)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = int(server.server_address[1])
    try:
        yield Recorder(f"http://127.0.0.1:{port}", port, seen)
    finally:
        server.shutdown()
        server.server_close()


def brightness(images: np.ndarray) -> np.ndarray:
    """P(dark), P(bright) from the mean brightness."""
    mean = images.reshape(len(images), -1).mean(axis=1)
    p = 1.0 / (1.0 + np.exp(-(mean - 128.0) / 16.0))
    return np.stack([1 - p, p], axis=1).astype(np.float32)


def remote_app(slow_seconds: float, hang_seconds: float) -> FastAPI:
    """An Open Inference service: ``bright`` answers at once, ``slow`` and ``hang`` late."""
    app = FastAPI()
    meta = {
        **TINY_META,
        "input": {"width": 8, "height": 8, "layout": "NHWC", "dtype": "uint8", "scale": 1.0},
    }

    def metadata(name: str) -> dict:
        return {
            "name": name,
            "platform": "test",
            "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8, 3]}],
            "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 2]}],
            "parameters": {"limner_model": {**meta, "name": name}},
        }

    @app.get("/v2/models/{name}")
    def read(name: str) -> dict:
        time.sleep({"slow": slow_seconds, "hang": hang_seconds}.get(name, 0.0))
        return metadata(name)

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, req: InferenceRequest) -> InferenceResponse:
        x = decode_tensor(req.inputs[0])
        return InferenceResponse(
            model_name=name, outputs=[encode_tensor("probability", brightness(x))]
        )

    return app


@contextmanager
def remote_service(slow_seconds: float, hang_seconds: float) -> Iterator[str]:
    """Serve :func:`remote_app` on loopback; yields its base URL."""
    with EmbeddedServer(remote_app(slow_seconds, hang_seconds)) as server:
        yield server.url


@dataclass
class Serve:
    """A ``limner serve`` subprocess, its data dir and the admin key its first start printed."""

    url: str
    data_dir: Path
    admin_key: str
    proc: subprocess.Popen[bytes]

    def tenant_key(self, space: str) -> str:
        """A new tenant key of ``space``."""
        db = Database(f"sqlite:///{(self.data_dir / 'limner.db').resolve()}")
        try:
            return create_key(db, space)
        finally:
            db.close()

    def http(self, key: str, timeout: float = 60.0) -> httpx.Client:
        """An HTTP client with ``key``."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )

    def uploads(self) -> list[Path]:
        """Everything under the data dir's ``models`` folder."""
        root = self.data_dir / "models"
        return sorted(root.rglob("*")) if root.exists() else []


@contextmanager
def serve(data_dir: Path, port: int, env: dict[str, str]) -> Iterator[Serve]:
    """``limner serve`` on ``127.0.0.1:port`` with ``LIMNER_*`` settings ``env``."""
    out, log = data_dir.parent / "serve.out", data_dir.parent / "serve.log"
    cmd = [sys.executable, "-m", "limner.cli.main", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir)]
    full_env = {**os.environ, "LIMNER_WORKERS": "2", **env}
    with out.open("wb") as o, log.open("wb") as e:
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, seconds=120, log=log.read_text)
        key = out.read_text().strip().splitlines()[0]
        yield Serve(url, data_dir, key, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def deploy(http: httpx.Client, *, wait: float = 30.0, **kwargs: object) -> httpx.Response:
    """``POST /v1/deployments``, retried while the server answers 503 busy."""
    deadline = time.monotonic() + wait
    while True:
        resp = http.post("/v1/deployments", **kwargs)  # type: ignore[arg-type]
        busy = resp.status_code == 503 and resp.json()["error"]["code"] == "busy"
        if not busy or time.monotonic() > deadline:
            return resp
        time.sleep(float(resp.headers.get("retry-after", "1")))


def error_of(resp: httpx.Response, status: int) -> dict:
    """The JSON error of ``resp``, asserting its status and that it is a clean error."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()["error"]
    assert body["code"] and body["message"] and "Traceback" not in resp.text
    return body
