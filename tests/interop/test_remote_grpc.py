"""Explaining models over the protocol's gRPC side (``grpc://host:port/NAME``): a KServe
ModelServer's gRPC port and limner's own ``--grpc-port``, with headers as gRPC metadata; and the
service, which calls tenants' models over HTTP only, refusing gRPC URLs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from interop_helpers import LABELS, SECRET_HEADER, KServe, Server, half_bright
from PIL import Image

import limner
from limner.errors import InvalidInputError, ModelError, ModelUnavailableError
from limner.imaging import decode_image, resize
from limner.models.remote_grpc import GrpcRemoteModel, parse_grpc_url
from limner.models.zoo import imagenet_labels

HINTS = {"labels": LABELS, "input": {"width": 32, "height": 32}, "output": "logits"}
HEADERS = dict([SECRET_HEADER])


def test_kserve_over_grpc_gives_the_local_probabilities(kserve: KServe) -> None:
    local = limner.load_model(
        kserve.onnx,
        metadata={**HINTS, "input": {**HINTS["input"], "layout": "NCHW", "scale": 1 / 255}},
    )
    x = np.random.default_rng(1).integers(0, 256, (150, 32, 32, 3), dtype=np.uint8)
    model = limner.load_model(kserve.grpc_url, metadata=HINTS, headers=HEADERS)
    try:
        assert isinstance(model, GrpcRemoteModel) and model.labels == LABELS
        # 150 images go as three requests of at most 64, two at a time
        np.testing.assert_allclose(model.predict(x), local.predict(x), atol=1e-5)
        exp = limner.explain(
            half_bright(), model, segmentation="grid", segments=4, samples=16, baseline="gray"
        )
        assert exp.classes[0].label == "bright"
    finally:
        model.close()


def test_a_missing_grpc_header_is_a_readable_error(kserve: KServe) -> None:
    model = GrpcRemoteModel(kserve.grpc_url, hints=HINTS)
    with pytest.raises(ModelError, match="X-Api-Key missing or wrong"):
        model.predict(half_bright(32, 32)[None])
    model.close()


def test_limner_grpc_needs_the_key_and_logs_nothing(server: Server) -> None:
    url = f"grpc://{server.grpc}/{server.model}"
    hints = {"labels": imagenet_labels(), "input": {"width": 224, "height": 224}}
    with pytest.raises(ModelError, match=r"UNAUTHENTICATED.*Authorization"):
        GrpcRemoteModel(url, hints=hints)
    auth = {"Authorization": f"Bearer {server.key}"}
    image = resize(decode_image(server.photo.read_bytes()), 224, 224)
    with server.client() as client:
        (sub,) = client.subscriptions.list()
        (dep,) = [d for d in client.deployments.list() if d.name == server.model]
        before = len(sub.transactions(limit=500))
        scored = client.score(dep, image)
        model = GrpcRemoteModel(url, hints=hints, headers=auth)
        try:
            probs = model.predict(np.stack([image] * 3))
        finally:
            model.close()
        after = len(sub.transactions(limit=500))
    assert [int(np.argmax(p)) for p in probs] == [imagenet_labels().index(scored.label)] * 3
    np.testing.assert_allclose(probs[0].max(), scored.probability, atol=1e-4)
    assert after == before + 1  # the client's own scoring only: the model's calls are not logged


def test_grpc_urls_are_checked(tmp_path: Path) -> None:
    assert parse_grpc_url("grpc://127.0.0.1:8081/v2/models/lite0") == (
        "127.0.0.1:8081",
        "lite0",
        False,
    )
    assert parse_grpc_url("grpcs://[::1]:443/m") == ("[::1]:443", "m", True)
    for bad in ("grpc://127.0.0.1/m", "grpc://127.0.0.1:8081/", "grpc://127.0.0.1:99999/m"):
        with pytest.raises(InvalidInputError):
            parse_grpc_url(bad)
    # a name that never resolves: unreachable, said in one line, not a hang or a crash
    with pytest.raises(ModelUnavailableError, match="cannot be reached"):
        GrpcRemoteModel("grpc://limner-model.invalid:8081/m", hints=HINTS, timeout=20)
    image = tmp_path / "half.png"
    Image.fromarray(half_bright()).save(image)
    proc = subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "explain", str(image), "--model",
         "grpc://127.0.0.1/m", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 2 and "grpc://HOST:PORT/MODEL" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_service_refuses_grpc_model_urls(server: Server, kserve: KServe) -> None:
    """The service reaches tenants' models through its HTTP guard only: a gRPC URL is refused
    with a 422 that says what to deploy instead, loopback or not, whoever asks."""
    for url in (kserve.grpc_url, "grpc://limner-model.invalid:8081/m"):
        resp = httpx.post(
            f"{server.http}/v1/deployments",
            json={"name": "over-grpc", "model": url},
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=30,
        )
        assert resp.status_code == 422, resp.text
        assert "http(s)://host/v2/models/NAME" in resp.json()["error"]["message"]
