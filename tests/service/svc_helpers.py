"""Helpers of the service tests: run a real server on loopback, make PostgreSQL schemas."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch
from torch import nn

from limner.client import APIClient, Deployment
from limner.models import InputSpec, ModelMetadata
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key
from loopback import free_port  # noqa: F401 (re-exported to the tests)

#: Explanation settings that keep tests quick.
FAST = {"samples": 64, "segmentation": "grid", "segments": 8, "baseline": "gray"}


@dataclass
class Running:
    """A running service and an admin key of its space ``default`` (the operator's own)."""

    url: str
    key: str
    settings: Settings
    server: EmbeddedServer

    def client(self, key: str | None = None) -> APIClient:
        return APIClient(self.url, api_key=key or self.key)

    def new_key(self, space: str, role: str = "tenant") -> str:
        """A key of ``space`` (a tenant's, unless ``role`` says otherwise)."""
        db = Database(self.settings.resolved_database_url())
        try:
            return create_key(db, space, role=role)
        finally:
            db.close()


@contextmanager
def running(settings: Settings) -> Iterator[Running]:
    """Serve ``settings`` on a free loopback port for the block."""
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "default", role="admin")
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        yield Running(server.url, key, settings, server)


def start_server(
    data_dir: Path, port: int, workers: int = 1
) -> tuple[subprocess.Popen[str], str | None]:
    """Start a real ``limner serve`` subprocess on SQLite in ``data_dir``; wait until it answers.

    Returns the process and the API key it printed (only the first start prints one).
    """
    env = {**os.environ, "LIMNER_WORKERS": str(workers), "LIMNER_DATABASE_URL": ""}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "limner.cli.main",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"limner serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("limner serve did not come up")
    key = None
    if proc.stdout is not None:
        os.set_blocking(proc.stdout.fileno(), False)
        key = (proc.stdout.readline() or "").strip() or None
    return proc, key


class TinyConv(nn.Module):
    """A two-class convolutional model small enough to export and explain in a blink."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def deploy_onnx(
    client: APIClient,
    name: str,
    module: Any,
    directory: Path,
    labels: Sequence[str] = ("a", "b"),
    size: int = 16,
) -> Deployment:
    """Export the torch ``module`` (an RGB ``size``² input, any batch, logits out) to ONNX
    in ``directory`` and deploy it as ``name`` with ``labels``."""
    path = directory / f"{name}.onnx"
    torch.onnx.export(
        module,
        torch.zeros(1, 3, size, size),
        str(path),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    meta = ModelMetadata(
        labels=list(labels), input=InputSpec(width=size, height=size), output="logits", name=name
    ).to_dict()
    return client.deployments.create(name=name, file=path, metadata=meta)


def onnx_and_builtin(shared: Running, directory: Path, suffix: str = "") -> dict[str, Any]:
    """A tiny ONNX deployment (no gradients) and the built-in EfficientNet-Lite0 (gradients),
    each with a subscription, in the admin's space: ``client``, ``http``, ``onnx_dep``,
    ``onnx_sub``, ``builtin`` and ``builtin_sub``. ``suffix`` keeps the names of modules that
    share one server apart."""
    client = shared.client()
    http = httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {shared.key}"}, timeout=120
    )
    onnx_dep = deploy_onnx(client, f"tiny-onnx{suffix}", TinyConv(), directory)
    builtin = client.deployments.create(name=f"lite0{suffix}", model="efficientnet-lite0")
    return {
        "client": client,
        "http": http,
        "onnx_dep": onnx_dep,
        "onnx_sub": client.subscriptions.create(deployment_id=onnx_dep.id),
        "builtin": builtin,
        "builtin_sub": client.subscriptions.create(deployment_id=builtin.id),
    }
