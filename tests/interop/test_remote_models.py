"""Explaining models served elsewhere: a KServe ModelServer that publishes no metadata (the
user gives labels and the input size), limner's own /v2, and headers that reach the server but
are never shown back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from interop_helpers import FAST, LABELS, SECRET_HEADER, KServe, free_port, half_bright
from PIL import Image

import limner
from limner.errors import InvalidInputError, ModelError
from limner.imaging import encode_png
from limner.models.remote import RemoteModel
from limner.service import EmbeddedServer
from limner.settings import Settings
from service.svc_helpers import Running, running

HINTS = {"labels": LABELS, "input": {"width": 32, "height": 32}, "output": "logits"}
HEADERS = dict([SECRET_HEADER])


def limner_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limner.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_kserve_publishes_nothing_and_the_user_fills_it_in(kserve: KServe) -> None:
    meta = httpx.get(kserve.url).json()
    assert meta["inputs"] == [] and meta["outputs"] == [] and meta["versions"] is None
    with pytest.raises(InvalidInputError, match="does not publish the model's input size"):
        limner.load_model(kserve.url, headers=HEADERS)
    # with the input size only, the class count comes from one answer
    probed = limner.load_model(
        kserve.url, metadata={"input": {"width": 32, "height": 32}}, headers=HEADERS
    )
    assert probed.labels == ["class_0", "class_1"]
    probed.close()


def test_binary_and_json_tensors_give_the_local_probabilities(kserve: KServe) -> None:
    local = limner.load_model(
        kserve.onnx,
        metadata={**HINTS, "input": {**HINTS["input"], "layout": "NCHW", "scale": 1 / 255}},
    )
    x = np.random.default_rng(0).integers(0, 256, (150, 32, 32, 3), dtype=np.uint8)
    binary = RemoteModel(kserve.url, hints=HINTS, headers=HEADERS, request_batch=64)
    as_json = RemoteModel(kserve.url, hints=HINTS, headers=HEADERS, binary=False)
    try:
        np.testing.assert_allclose(binary.predict(x), local.predict(x), atol=1e-5)
        # KServe lists no extension but answers binary; the faster of the two encodings stays
        assert binary._binary in (True, False)
        np.testing.assert_allclose(as_json.predict(x[:5]), local.predict(x[:5]), atol=1e-5)
        # preprocessed FP32 NCHW tensors as JSON: the server passes them to the model as they are
        fp32 = RemoteModel(
            kserve.url, hints=local.metadata.to_dict(), headers=HEADERS, binary=False
        )
        assert fp32.preprocess(x[:1]).dtype == np.float32
        np.testing.assert_allclose(fp32.predict(x[:7]), local.predict(x[:7]), atol=1e-5)
        fp32.close()
    finally:
        binary.close()
        as_json.close()


def test_a_wrong_header_is_a_readable_error(kserve: KServe) -> None:
    model = RemoteModel(kserve.url, hints=HINTS, headers={"X-Api-Key": "wrong"})
    with pytest.raises(ModelError, match="X-Api-Key missing or wrong"):
        model.predict(half_bright(32, 32)[None])
    model.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_cli_explains_a_kserve_model_with_labels_size_and_header(
    kserve: KServe, tmp_path: Path, transport: str
) -> None:
    image = tmp_path / "half.png"
    Image.fromarray(half_bright()).save(image)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    name, value = SECRET_HEADER
    url = kserve.url if transport == "http" else kserve.grpc_url
    args = ["explain", str(image), "--model", url, "--labels", str(labels),
            "--input-size", "32", "--output", "logits", "--class", "bright",
            "--segmentation", "grid", "--segments", "4", "--samples", "32",
            "--baseline", "gray", "--out", str(tmp_path / "out"), "--json"]  # fmt: skip
    refused = limner_cli(*args)
    assert refused.returncode == 2 and "X-Api-Key missing or wrong" in refused.stderr
    assert "Traceback" not in refused.stderr
    proc = limner_cli(*args, "--header", f"{name}: {value}")
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)["results"][0]["explanations"]
    assert entry["label"] == "bright" and entry["probability"] > 0.8
    right = sum(r["weight"] for r in entry["regions"] if r["bbox"][0] >= 32)
    left = sum(r["weight"] for r in entry["regions"] if r["bbox"][2] <= 32)
    assert right > 0 > left
    assert Path(entry["images"]["positive"]).is_file()
    assert Path(entry["images"]["negative"]).is_file()


# --- through the service ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, kserve: KServe) -> Iterator[Running]:
    """A service whose operator allows the KServe server's loopback URL (and nothing else)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("interop"), workers=2, allowed_urls=kserve.url
    )
    with running(settings) as r:
        yield r


def assert_never_shown(secret: str, *answers: object) -> None:
    for answer in answers:
        text = answer if isinstance(answer, str) else json.dumps(answer, default=str)
        assert secret not in text


@pytest.mark.slow
def test_service_deploys_and_explains_a_kserve_model(service: Running, kserve: KServe) -> None:
    key = service.new_key("kserve-tenant")
    auth = {"Authorization": f"Bearer {key}"}
    with service.client(key) as client:
        dep = client.deployments.create(
            name="bright-remote", model=kserve.url, headers=HEADERS, **HINTS
        )
        assert dep.data["num_classes"] == 2 and dep.data["input_size"] == [32, 32]
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(method="kernelshap", **FAST)
        scored = client.score(dep, encode_png(half_bright()))
        assert scored.label == "bright"
        exp = client.explanations.create(scored.scoring_id, classes=["bright"]).wait(timeout=120)
        entry = exp.result["explanations"][0]
        right = sum(r["weight"] for r in entry["regions"] if r["bbox"][0] >= 32)
        left = sum(r["weight"] for r in entry["regions"] if r["bbox"][2] <= 32)
        assert right > 0 > left
        for kind in ("positive", "negative"):
            pane = httpx.get(entry["images"][kind], headers=auth)
            assert pane.status_code == 200 and pane.content.startswith(b"\x89PNG")
        base = service.url
        answers = [
            dep.data,
            httpx.get(f"{base}/v1/deployments", headers=auth).text,
            httpx.get(f"{base}/v1/deployments/{dep.id}", headers=auth).text,
            httpx.get(f"{base}/v2/models/bright-remote", headers=auth).text,
            httpx.get(f"{base}/v1/subscriptions", headers=auth).text,
            exp.result,
        ]
        assert_never_shown(SECRET_HEADER[1], *answers)


@pytest.mark.slow
def test_external_subscription_sends_its_headers(service: Running, kserve: KServe) -> None:
    import base64

    key = service.new_key("kserve-external")
    auth = {"Authorization": f"Bearer {key}"}
    with service.client(key) as client:
        sub = client.subscriptions.create(
            name="bright-ext", scoring_url=kserve.url, labels=LABELS,
            input={"width": 32, "height": 32}, output="logits", headers=HEADERS,
        )  # fmt: skip
        image = base64.b64encode(encode_png(half_bright())).decode()
        sid = sub.log_records([{"image": image, "probabilities": [0.1, 0.9]}])[0]["scoring_id"]
        sub.enable_explainability(**FAST)
        exp = client.explanations.create(sid, classes=["bright"]).wait(timeout=120)
        assert exp.result["explanations"][0]["regions"]
        answers = [
            sub.data,
            httpx.get(f"{service.url}/v1/subscriptions", headers=auth).text,
            httpx.get(f"{service.url}/v1/subscriptions/{sub.id}", headers=auth).text,
        ]
        assert_never_shown(SECRET_HEADER[1], *answers)


def test_a_url_the_operator_did_not_allow_is_refused(service: Running) -> None:
    key = service.new_key("kserve-guard")
    resp = httpx.post(
        f"{service.url}/v1/deployments",
        json={"name": "elsewhere", "model": f"http://127.0.0.1:{free_port()}/v2/models/x", **HINTS},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 403, resp.text


def test_bad_headers_are_refused(service: Running, kserve: KServe) -> None:
    auth = {"Authorization": f"Bearer {service.key}"}
    for headers in ({"X-Bad": "a\r\nInjected: 1"}, {"Bad Name": "x"}):
        resp = httpx.post(
            f"{service.url}/v1/deployments",
            json={"name": "bad-headers", "model": kserve.url, "headers": headers, **HINTS},
            headers=auth,
        )
        assert resp.status_code == 422, resp.text
    local = httpx.post(
        f"{service.url}/v1/deployments",
        json={"name": "builtin-headers", "model": "efficientnet-lite0", "headers": HEADERS},
        headers=auth,
    )
    assert local.status_code == 422 and "URL models" in local.json()["error"]["message"]


# --- limner's own /v2 and LIMNER_API_KEY ----------------------------------------------------


def recorder() -> tuple[FastAPI, list[dict[str, str]]]:
    """A loopback server that records the headers it gets and answers 401 (not limner's)."""
    app = FastAPI()
    seen: list[dict[str, str]] = []

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    def anything(path: str, request: Request) -> JSONResponse:
        seen.append(dict(request.headers))
        return JSONResponse({"error": "who are you"}, status_code=401)

    return app, seen


@pytest.mark.slow
def test_cli_sends_limner_api_key_only_to_limner(
    service: Running, kserve: KServe, tmp_path: Path
) -> None:
    key = service.new_key("own-v2")
    with service.client(key) as client:
        client.deployments.create(name="bright-local", file=kserve.onnx, metadata={
            **HINTS, "input": {"width": 32, "height": 32, "layout": "NCHW", "scale": 1 / 255},
        })  # fmt: skip
    image = tmp_path / "half.png"
    Image.fromarray(half_bright()).save(image)
    args = ["explain", str(image), "--segmentation", "grid", "--segments", "4",
            "--samples", "32", "--out", str(tmp_path / "out"), "--json"]  # fmt: skip
    url = f"{service.url}/v2/models/bright-local"
    own = RemoteModel(url, headers={"Authorization": f"Bearer {key}"})
    assert own.labels == LABELS and own.predict(half_bright(32, 32)[None])[0, 1] > 0.5
    assert own._binary is True  # limner lists the binary tensor extension
    own.close()
    proc = limner_cli(*args, "--model", url, env={"LIMNER_API_KEY": key})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["explanations"][0]["label"] == "bright"
    app, seen = recorder()
    with EmbeddedServer(app) as other:
        proc = limner_cli(*args, "--model", f"{other.url}/v2/models/x", env={"LIMNER_API_KEY": key})
    assert proc.returncode == 2 and "answered 401" in proc.stderr
    assert seen and all(key not in json.dumps(h) for h in seen)
