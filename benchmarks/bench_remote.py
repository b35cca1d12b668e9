"""What explaining through a loopback Open Inference server costs against the local model.

The built-in efficientnet-lite0 (ONNX Runtime) explains the same photos five ways, in rotation
so that a shared machine's load falls on each alike:

- locally, in this process;
- through limner's own server (``limner serve --grpc-port`` in its own process, the model
  deployed there), over HTTP ``/v2`` (labels and input settings from the server's metadata)
  and over gRPC (``grpc://``; the same settings given as hints);
- through a KServe ``ModelServer`` (its own process, ``tests/interop/kserve_server.py``, serving
  the same ONNX file, preprocessing UINT8 pixels itself, publishing no metadata: labels and
  input size are given as hints), over HTTP ``/v2`` (the server lists no binary extension, so
  limner tries binary and JSON on the first batch and keeps the faster) and over gRPC.

Prints a markdown table of the median seconds per explanation and the ratio to local.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_remote.py [--photos 3] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

import limner
from limner.client import APIClient
from limner.models import Model
from limner.models.remote import RemoteModel
from limner.models.remote_grpc import GrpcRemoteModel
from limner.models.zoo import efficientnet_lite0_onnx, imagenet_labels
from limner.samples import sample_photo
from limner.settings import Settings
from limner.store import Database, create_key

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "efficientnet-lite0"
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url}: the server did not start")


def start_limner(tmp: Path) -> tuple[subprocess.Popen[bytes], str, str, int]:
    data_dir = tmp / "limner-data"
    env = {**os.environ, "LIMNER_DATA_DIR": str(data_dir)}
    settings = Settings(data_dir=data_dir, database_url="")
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "default")
    db.close()
    port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "limner.cli.main", "serve", "--port", str(port),
         "--data-dir", str(data_dir), "--workers", "1", "--grpc-port", str(grpc_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/healthz", proc, {})
    with APIClient(base, api_key=key) as client:
        client.deployments.create(name="imagenet", model="efficientnet-lite0")
    return proc, f"{base}/v2/models/imagenet", key, grpc_port


def start_kserve() -> tuple[subprocess.Popen[bytes], str, int]:
    port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "interop" / "kserve_server.py"), "--port",
         str(port), "--grpc-port", str(grpc_port), "--onnx", str(efficientnet_lite0_onnx()),
         "--name", "lite0", "--scale", "1", "--mean", "127", "--std", "128"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v2/models/lite0"
    wait_ready(f"{url}/ready", proc, {})
    return proc, url, grpc_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    images = [sample_photo(name) for name in PHOTOS[: args.photos]]
    kserve_hints = {
        "labels": imagenet_labels(),
        "input": {"width": 224, "height": 224},
        "output": "logits",
    }
    with tempfile.TemporaryDirectory() as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            limner_proc, limner_url, key, limner_grpc = start_limner(Path(tmp))
            procs.append(limner_proc)
            kserve_proc, kserve_url, kserve_grpc = start_kserve()
            procs.append(kserve_proc)
            auth = {"Authorization": f"Bearer {key}"}
            raw_pixels = {"labels": imagenet_labels(), "input": {"width": 224, "height": 224}}
            models: dict[str, Callable[[], Model]] = {
                "local (ONNX Runtime)": lambda: limner.load_model(
                    "efficientnet-lite0", device="cpu"
                ),
                "limner /v2": lambda: RemoteModel(limner_url, headers=auth),
                "limner gRPC": lambda: GrpcRemoteModel(
                    f"grpc://127.0.0.1:{limner_grpc}/imagenet", hints=raw_pixels, headers=auth
                ),
                "KServe /v2": lambda: RemoteModel(kserve_url, hints=kserve_hints),
                "KServe gRPC": lambda: GrpcRemoteModel(
                    f"grpc://127.0.0.1:{kserve_grpc}/lite0", hints=kserve_hints
                ),
            }
            loaded = {name: make() for name, make in models.items()}
            for model in loaded.values():  # warm up: sessions, connections, the binary probe
                limner.explain(images[0], model, samples=16, seed=0)
            seconds: dict[str, list[float]] = {name: [] for name in loaded}
            for _ in range(args.repeats):
                for image in images:
                    for name, model in loaded.items():
                        t = time.perf_counter()
                        limner.explain(image, model, seed=0)
                        seconds[name].append(time.perf_counter() - t)
            base = statistics.median(seconds["local (ONNX Runtime)"])
            print("| model | tensors | s / explanation (median) | × local |")
            print("| --- | --- | --- | --- |")
            for name, model in loaded.items():
                transport = (
                    "raw contents"
                    if isinstance(model, GrpcRemoteModel)
                    else "in process"
                    if not isinstance(model, RemoteModel)
                    else "binary"
                    if model._binary
                    else "JSON"
                )
                median = statistics.median(seconds[name])
                print(f"| {name} | {transport} | {median:.2f} | {median / base:.2f} |")
                model.close()
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
