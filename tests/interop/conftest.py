"""Interop fixtures: a tiny ONNX classifier made here, served by a real KServe ``ModelServer``
in its own process on a free loopback port (publishing no metadata, checking a header)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from interop_helpers import SECRET_HEADER, KServe, bright_onnx

from service.svc_helpers import free_port


@pytest.fixture(scope="session")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServe]:
    if importlib.util.find_spec("kserve") is None:
        pytest.skip("the KServe tests need the kserve package (pip install 'limner[dev]')")
    folder = tmp_path_factory.mktemp("kserve")
    onnx = bright_onnx(folder / "bright.onnx")
    port = free_port()
    name, value = SECRET_HEADER
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("kserve_server.py")), "--port", str(port),
         "--onnx", str(onnx), "--name", "bright", "--scale", str(1 / 255), "--mean", "0",
         "--std", "1", "--require-header", f"{name}: {value}"],
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
        yield KServe(f"{base}/v2/models/bright", onnx, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
