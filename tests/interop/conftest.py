"""One real ``limner serve --grpc-port`` process per module, with a key and a subscribed
deployment whose explainability is on (quick settings)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from interop_helpers import FAST, Server, free_port

from limner.client import APIClient
from limner.imaging import encode_png
from limner.store import Database, create_key


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
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"limner serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("limner serve did not come up")
        time.sleep(0.2)
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
