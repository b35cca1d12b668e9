"""Interop fixtures: one real ``limner serve --grpc-port`` process per module, with a key and a
subscribed deployment whose explainability is on (quick settings); a KServe ``ModelServer`` in
its own process on free loopback ports (HTTP and gRPC) serving a tiny ONNX classifier made here
(publishing no metadata, checking a header)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from interop_helpers import FAST, SECRET_HEADER, KServe, Server, bright_onnx, free_port

from limner.client import APIClient
from limner.imaging import encode_png
from limner.store import Database, create_key
from loopback import wait_healthy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("interop")
    db = Database(f"sqlite:///{(data / 'limner.db').resolve()}")
    db.migrate()
    key = create_key(db, "interop")
    db.close()
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "LIMNER_WORKERS": "1", "LIMNER_DATABASE_URL": ""}
    cmd = [sys.executable, "-m", "limner.cli.main", "serve", "--port", str(port)]
    cmd += ["--grpc-port", str(grpc_port), "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, seconds=90, log=lambda: proc.stderr.read().decode())
    from skimage import data as samples

    photo = data / "cat.png"
    photo.write_bytes(encode_png(samples.chelsea()))
    with APIClient(url, api_key=key) as client:
        dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(method="kernelshap", **FAST)
    try:
        yield Server(url, f"127.0.0.1:{grpc_port}", key, "imagenet", photo)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServe]:
    if importlib.util.find_spec("kserve") is None:
        pytest.skip("the KServe tests need the kserve package (pip install 'limner[dev]')")
    folder = tmp_path_factory.mktemp("kserve")
    onnx = bright_onnx(folder / "bright.onnx")
    port, grpc_port = free_port(), free_port()
    name, value = SECRET_HEADER
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("kserve_server.py")), "--port", str(port),
         "--grpc-port", str(grpc_port), "--onnx", str(onnx), "--name", "bright",
         "--scale", str(1 / 255), "--mean", "0", "--std", "1",
         "--require-header", f"{name}: {value}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/v2/models/bright/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "server.log").read_text()[-2000:]
                raise RuntimeError(f"the KServe server did not start: {tail}")
            time.sleep(0.3)
        grpc_url = f"grpc://127.0.0.1:{grpc_port}/bright"
        yield KServe(f"{base}/v2/models/bright", onnx, proc, grpc_url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
