"""Memory attacks leave the API server's memory alone and stop at the worker's limit.

Each attack goes through a real ``limner serve`` on loopback; the server's resident memory is
sampled while it runs (``PeakMemory``) and must stay within 300 MB of idle. Before containment,
the config bomb took the server from 129 MB to 5 GB, compressed-zero weights 1 GB per deploy,
the dtype 1.46 GB, a remote's answer 2.3 GB and a JSON deploy body 2.66 GB.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import onnx
import pytest
from limits_helpers import PeakMemory, Server, limner_serve
from onnx import TensorProto, helper
from sec_helpers import TINY_META, tiny_onnx

#: What an attack may add to the idle server.
SERVER_BUDGET = 300 * 1024**2
#: The address space of each model worker on the attacked server.
WORKER_LIMIT = 1536 * 1024**2
#: Zeros in the compressed-weights model: more than a worker may hold.
ZERO_BYTES = 1_200_000_000


class _Endless(BaseHTTPRequestHandler):
    """An Open Inference server whose metadata answer never stops coming (1 GB of JSON)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"name": "x", "platform": "')
        block = b"a" * (1 << 20)
        try:
            for _ in range(1024):
                self.wfile.write(block)
        except OSError:
            return

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, remote: str) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("memory")
    env = {
        "LIMNER_WORKER_MEMORY_BYTES": str(WORKER_LIMIT),
        "LIMNER_MAX_UNPACKED_BYTES": str(3 * 10**9),
        "LIMNER_SPACE_QUOTA_BYTES": str(4 * 10**9),
        "LIMNER_ALLOWED_URLS": f"{remote}/",
    }
    with limner_serve(tmp, **env) as running:
        yield running


def _zeros_zip(path: Path) -> Path:
    """A model directory whose ONNX weights are ``ZERO_BYTES`` of zeros in external data: the
    zip is a few MB, the weights unpack to more than a worker may hold."""
    n = ZERO_BYTES // 4
    weights = TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[n])
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(n * 4))):
        weights.external_data.add(key=key, value=value)
    small = onnx.load_from_string(tiny_onnx(path.with_suffix(".onnx")).read_bytes())
    small.graph.initializer.append(weights)
    small.graph.node.append(helper.make_node("ReduceSum", ["big"], ["unused"], keepdims=0))
    block = bytes(1 << 24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.onnx", small.SerializeToString())
        z.writestr("limner-model.json", json.dumps(TINY_META))
        with z.open("weights.bin", "w", force_zip64=True) as f:
            left = n * 4
            while left:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    return path


def _keras_bomb() -> bytes:
    """A .keras whose config.json inflates to 300 MB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("config.json", "w", force_zip64=True) as f:
            f.write(b'{"class_name": "Sequential", "pad": "')
            for _ in range(300):
                f.write(b" " * (1 << 20))
            f.write(b'"}')
        z.writestr("metadata.json", "{}")
    return buf.getvalue()


def _attack(server: Server, what: str, attack: object) -> httpx.Response:
    with PeakMemory(server.proc.pid) as peak:
        resp = attack()  # type: ignore[operator]
    print(peak.report(what))
    assert peak.growth < SERVER_BUDGET, peak.report(what)
    assert resp.status_code in (400, 403, 413, 422, 503), (what, resp.status_code, resp.text)
    assert "Traceback" not in resp.text
    return resp


def test_memory_attacks_stay_out_of_the_server(server: Server, remote: str, tmp_path: Path) -> None:
    bomb = zipfile.ZipFile(io.BytesIO(_keras_bomb()))
    assert bomb.getinfo("config.json").file_size > 300 * 1024**2
    zeros = _zeros_zip(tmp_path / "zeros.zip")
    assert zeros.stat().st_size < 20 * 1024**2
    dtype_meta = {**TINY_META, "input": {**TINY_META["input"], "dtype": "S4000000"}}
    with server.http(server.new_key("mallory")) as http:
        _attack(
            server,
            "keras config bomb",
            lambda: http.post(
                "/v1/deployments",
                data={"name": "bomb"},
                files={"file": ("m.keras", _keras_bomb(), "application/octet-stream")},
            ),
        )
        resp = _attack(
            server,
            "compressed zeros",
            lambda: http.post(
                "/v1/deployments",
                data={"name": "zeros"},
                files={"file": ("m.zip", zeros.read_bytes(), "application/zip")},
            ),
        )
        message = resp.json()["error"]["message"].lower()
        assert "memory" in message or "allocat" in message, resp.text  # the worker's limit
        _attack(
            server,
            "dtype",
            lambda: http.post(
                "/v1/deployments",
                data={"name": "dtype"},
                files={
                    "file": ("model.onnx", tiny_onnx(tmp_path / "t.onnx").read_bytes()),
                    "metadata": ("limner-model.json", json.dumps(dtype_meta), "application/json"),
                },
            ),
        )
        _attack(
            server,
            "remote body",
            lambda: http.post(
                "/v1/deployments",
                json={"name": "remote", "model": f"{remote}/v2/models/x", "labels": ["a", "b"]},
            ),
        )

        def body() -> Iterator[bytes]:
            yield b'{"name": "x", "model": "efficientnet-lite0", "pad": "'
            block = b" " * (1 << 20)
            for _ in range(500):
                yield block

        _attack(
            server,
            "deploy body",
            lambda: http.post(
                "/v1/deployments", content=body(), headers={"Content-Type": "application/json"}
            ),
        )
        # and the server still serves
        assert http.get("/v1/deployments").status_code == 200
