"""``limner kserve-explainer`` in front of KServe's own ModelServer (the predictor, on
loopback): called as KServe's router calls an explainer, with KServe's client; its routes and
error shapes beside the ModelServer's; the predictor it reaches is the operator's only."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from interop_helpers import LABELS, SECRET_HEADER, KServe, free_port, half_bright
from PIL import Image

from limner.errors import InvalidInputError
from limner.imaging import encode_png
from limner.imaging.transform import resize
from limner.kserve import ExplainerConfig, create_explainer_app
from limner.kserve.predictor import predictor_client
from limner.net import UrlNotAllowedError

NAME = "bright"
QUICK = {"segmentation": "grid", "segments": 4, "samples": 32, "baseline": "gray"}
MAX_INSTANCES = 6
MAX_BODY = 400_000
MAX_PIXELS = 100_000


@contextmanager
def explainer(kserve: KServe, tmp: Path, *extra: str) -> Iterator[str]:
    """A ``limner kserve-explainer`` process in front of ``kserve``; yields its base URL."""
    labels = tmp / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    port = free_port()
    name, value = SECRET_HEADER
    cmd = [sys.executable, "-m", "limner.cli.main", "kserve-explainer",
           "--model_name", NAME, "--http_port", str(port), "--host", "127.0.0.1",
           "--labels", str(labels), "--input-size", "32", "--output", "logits",
           "--header", f"{name}: {value}", "--max-instances", str(MAX_INSTANCES),
           "--max-body-bytes", str(MAX_BODY), "--max-pixels", str(MAX_PIXELS), *extra]  # fmt: skip
    log = (tmp / f"explainer-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v2/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(Path(log.name).read_text()[-3000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def predictor_host(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


@pytest.fixture(scope="module")
def http_explainer(kserve: KServe, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("kserve-explainer")
    with explainer(kserve, tmp, "--predictor_host", predictor_host(kserve.url)) as base:
        yield base


def png_b64(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def predictor_probabilities(kserve: KServe, image: np.ndarray) -> np.ndarray:
    """The predictor's own answer for ``image`` at the model's size, softmaxed as limner
    turns logits into probabilities."""
    x = resize(image, 32, 32)[None]
    body = {"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "UINT8",
                        "data": x.reshape(-1).tolist()}]}  # fmt: skip
    answer = httpx.post(f"{kserve.url}/infer", json=body, headers=dict([SECRET_HEADER]))
    assert answer.status_code == 200, answer.text
    logits = np.asarray(answer.json()["outputs"][0]["data"], np.float64).reshape(1, -1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True))[0]


def kserve_explain(base: str, body: dict[str, Any]) -> dict[str, Any]:
    """``:explain`` through KServe's own REST client (what its router forwards)."""
    from kserve import InferenceRESTClient, RESTConfig

    async def call() -> dict[str, Any]:
        client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=120))
        try:
            return await client.explain(base, NAME, body)
        finally:
            await client.close()

    return asyncio.run(call())


def assert_probabilities(result: dict[str, Any], expected: np.ndarray) -> None:
    got = {p["class_index"]: p["probability"] for p in result["predictions"]}
    assert sorted(got) == list(range(len(expected)))
    np.testing.assert_allclose([got[i] for i in range(len(expected))], expected, atol=1e-5)
    for entry in result["explanations"]:
        assert abs(entry["probability"] - expected[entry["class_index"]]) < 1e-5


def test_explain_through_kserve_client_gives_the_predictors_probabilities(
    kserve: KServe, http_explainer: str
) -> None:
    image = half_bright()
    body = {"instances": [{"image_bytes": {"b64": png_b64(image)}, "key": "1"}],
            "parameters": {**QUICK, "classes": ["bright"]}}  # fmt: skip
    answer = kserve_explain(http_explainer, body)
    (result,) = answer["results"]
    assert_probabilities(result, predictor_probabilities(kserve, image))
    assert (result["width"], result["height"]) == (64, 48)
    (entry,) = result["explanations"]
    assert entry["label"] == "bright"
    right = sum(r["weight"] for r in entry["regions"] if r["bbox"][0] >= 32)
    left = sum(r["weight"] for r in entry["regions"] if r["bbox"][2] <= 32)
    assert right > 0 > left
    for kind in ("positive", "negative", "heatmap"):
        ref = entry["images"][kind]
        assert ref.startswith("data:image/png;base64,")
        pane = Image.open(io.BytesIO(base64.b64decode(ref.split(",", 1)[1])))
        assert pane.size == (64, 48)


def test_every_documented_instance_form_reads_the_same_image(
    kserve: KServe, http_explainer: str
) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    b64 = png_b64(image)
    urlsafe = base64.urlsafe_b64encode(encode_png(image)).decode().rstrip("=")
    forms = [b64, f"data:image/png;base64,{b64}", {"b64": b64}, {"data": b64},
             {"image": {"b64": urlsafe}}, image.tolist()]  # fmt: skip
    assert len(forms) <= MAX_INSTANCES
    params = {"segmentation": "grid", "segments": 4, "method": "occlusion"}
    answer = httpx.post(
        f"{http_explainer}/v1/models/{NAME}:explain",
        json={"instances": forms, "parameters": params},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    expected = predictor_probabilities(kserve, image)
    assert len(results) == len(forms)
    for result in results:
        assert result["method"] == "occlusion"
        assert_probabilities(result, expected)


def test_routes_and_errors_are_shaped_as_kservers(kserve: KServe, http_explainer: str) -> None:
    ks = kserve.url.split("/v2/", 1)[0]
    for path in ("/", "/v1/models", f"/v1/models/{NAME}", "/v1/models/nope",
                 "/v2/health/live", "/v2/health/ready", "/v2/models",
                 f"/v2/models/{NAME}/ready", "/v2/models/nope/ready"):  # fmt: skip
        theirs, ours = httpx.get(ks + path), httpx.get(http_explainer + path)
        assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()), path
    # an unknown model and a body that is not JSON, on KServe's own explain route
    for model, body in (("nope", b"{}"), (NAME, b"not json{")):
        url = f"/v1/models/{model}:explain"
        headers = {"content-type": "application/json"}
        theirs = httpx.post(ks + url, content=body, headers=headers)
        ours = httpx.post(http_explainer + url, content=body, headers=headers)
        assert ours.status_code == theirs.status_code, (url, ours.text, theirs.text)
        assert set(ours.json()) == set(theirs.json()) == {"error"}
        if model == "nope":
            assert ours.json() == theirs.json()
        else:
            assert ours.json()["error"].startswith("Unrecognized request format")
            assert theirs.json()["error"].startswith("Unrecognized request format")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"not json{", 400, "Unrecognized request format"),
        (b'{"inputs": []}', 400, "instances"),
        (b'{"instances": []}', 400, "instances"),
        (b'{"instances": ["%%%not base64"]}', 400, "base64"),
        (b'{"instances": [{"b64": "aGVsbG8gd29ybGQ="}]}', 400, "not a readable image"),
        (b'{"instances": [{"key": 1}]}', 400, "no image"),
        (b'{"instances": [[[1, 2], [3]]]}', 400, "rectangular"),
        (b'{"instances": [[[[1, 2, 300]]]]}', 400, "0..255"),
        (b'{"instances": ["aGk="], "parameters": {"samples": 100000}}', 400, "at most"),
        (b'{"instances": ["aGk="], "parameters": {"method": "gradcam"}}', 400, "method"),
        (b'{"instances": ["aGk="], "parameters": {"steps": 3}}', 400, "steps"),
        (b'{"instances": ' + b"[" + b",".join([b'"aGk="'] * 7) + b"]}", 413, "instances"),
    ],
)
def test_bad_payloads_get_kserve_shaped_errors(
    http_explainer: str, body: bytes, status: int, says: str
) -> None:
    answer = httpx.post(
        f"{http_explainer}/v1/models/{NAME}:explain",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"} and says in answer.json()["error"]


def test_size_limits_answer_413(http_explainer: str) -> None:
    url = f"{http_explainer}/v1/models/{NAME}:explain"
    big = httpx.post(url, content=b'{"instances": ["' + b"A" * MAX_BODY + b'"]}')
    assert big.status_code == 413 and "body" in big.json()["error"]
    wide = np.zeros((300, 400, 3), np.uint8)  # 120 000 pixels over the 100 000 allowed
    over = httpx.post(url, json={"instances": [png_b64(wide)]})
    assert over.status_code == 413 and "megapixels" in over.json()["error"]
    unknown = httpx.post(f"{http_explainer}/v1/models/other:explain", json={"instances": []})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Model with name other does not exist."}


@contextmanager
def listener() -> Iterator[tuple[int, socket.socket]]:
    """A loopback port that listens and that nothing is configured to reach."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(0.5)
        yield sock.getsockname()[1], sock


def assert_no_connection(sock: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        sock.accept()


def test_a_request_cannot_choose_the_predictor(kserve: KServe, http_explainer: str) -> None:
    url = f"{http_explainer}/v1/models/{NAME}:explain"
    image = png_b64(half_bright(32, 32))
    with listener() as (port, sock):
        bodies = [
            {"instances": [image], "parameters": {"predictor_host": f"127.0.0.1:{port}"}},
            {"instances": [image], "parameters": {"predictor_url": f"http://127.0.0.1:{port}/v2"}},
            {"instances": [image], "parameters": {"predictor_host": "predictor.invalid"}},
            {"instances": [{"image_url": f"http://127.0.0.1:{port}/cat.png"}]},
            {"instances": [{"b64": image, "url": f"http://127.0.0.1:{port}/"}]},
        ]
        for body in bodies:
            answer = httpx.post(url, json=body, timeout=60)
            assert answer.status_code == 403, answer.text
            assert set(answer.json()) == {"error"}
        assert_no_connection(sock)
    # naming the configured predictor itself is no attack: it is the one reached anyway
    same = {"instances": [image],
            "parameters": {**QUICK, "predictor_host": predictor_host(kserve.url)}}  # fmt: skip
    assert httpx.post(url, json=same, timeout=60).status_code == 200


def test_the_predictor_client_reaches_the_configured_predictor_only(kserve: KServe) -> None:
    config = ExplainerConfig(model_name=NAME, predictor_host=predictor_host(kserve.url))
    with listener() as (port, sock), predictor_client(config) as client:
        for target in (f"http://127.0.0.1:{port}/v2", f"{config.predictor_base()}/metrics",
                       "http://predictor.invalid/v2"):  # fmt: skip
            with pytest.raises(UrlNotAllowedError):
                client.get(target)
        assert_no_connection(sock)
        assert client.get(f"{config.predictor_base()}/v2").status_code == 200


def test_stored_panes_are_linked_and_nothing_else_is_served(kserve: KServe, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    config = ExplainerConfig(
        model_name=NAME,
        predictor_host=predictor_host(kserve.url),
        hints={"labels": LABELS, "input": {"width": 32, "height": 32}, "output": "logits"},
        headers=dict([SECRET_HEADER]),
        panes="store",
        pane_dir=tmp_path / "panes",
    )
    (tmp_path / "secret.png").write_bytes(b"\x89PNG not yours")
    with TestClient(create_explainer_app(config)) as client:
        body = {"instances": [png_b64(half_bright())], "parameters": QUICK}
        answer = client.post(f"/v1/models/{NAME}:explain", json=body)
        assert answer.status_code == 200, answer.text
        entry = answer.json()["results"][0]["explanations"][0]
        link = entry["images"]["positive"]
        assert link.startswith(f"/v1/models/{NAME}/panes/")
        pane = client.get(link)
        assert pane.status_code == 200 and pane.content.startswith(b"\x89PNG")
        stored = link.split("/")[-2]
        for bad in (f"{stored}/..%2F..%2Fsecret.png", "..%2F/secret.png",
                    f"{stored}/%2e%2e", f"{'0' * 32}/0-bright-positive.png"):  # fmt: skip
            miss = client.get(f"/v1/models/{NAME}/panes/{bad}")
            # unmatched paths get FastAPI's 404, as on a KServe ModelServer
            assert miss.status_code == 404 and b"not yours" not in miss.content


def test_explainer_over_grpc_v2_gives_the_predictors_probabilities(
    kserve: KServe, tmp_path: Path
) -> None:
    host = predictor_host(kserve.grpc_url)
    with explainer(kserve, tmp_path, "--predictor-host", host, "--protocol", "grpc-v2",
                   "--panes", "none") as base:  # fmt: skip
        image = half_bright()
        body = {"instances": [{"image_bytes": {"b64": png_b64(image)}}], "parameters": QUICK}
        (result,) = kserve_explain(base, body)["results"]
        assert_probabilities(result, predictor_probabilities(kserve, image))
        assert all(v is None for e in result["explanations"] for v in e["images"].values())


def test_the_command_refuses_bad_settings_in_one_line() -> None:
    for args, says in (
        ([], "--predictor-host"),
        (["--predictor-host", "p.invalid", "--samples", "100000"], "at most"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "limner.cli.main", "kserve-explainer", *args],
            capture_output=True, text=True, timeout=60,
            env={k: v for k, v in os.environ.items() if k != "LIMNER_PREDICTOR_HOST"},
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"predictor_host": "p.invalid", "protocol": "v1"}, "--protocol"),
        ({"predictor_host": "http://p.invalid/x"}, "--predictor-host"),
        ({"predictor_host": "::1"}, "--predictor-host"),
        ({"predictor_host": "p.invalid:99999"}, "--predictor-host"),
        ({"predictor_host": "p.invalid", "panes": "store"}, "--pane-dir"),
        ({"predictor_host": "p.invalid", "panes": "files"}, "--panes"),
        ({"predictor_host": "p.invalid", "model_name": "a/b"}, "--model-name"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        ExplainerConfig(**{"model_name": NAME, **settings})


@pytest.mark.parametrize(
    ("configured", "named", "same"),
    [
        ("pred.default", "pred.default", True),
        ("pred.default", "PRED.default:80", True),
        ("pred.default", "http://pred.default/v2/models/x", True),
        ("pred.default:8080", "pred.default", False),
        ("pred.default", "pred.default.evil.invalid", False),
        ("[::1]:9000", "http://[::1]:9000/v2", True),
        ("[::1]:9000", "[::1]:9001", False),
        ("pred.default", "pred.default@evil.invalid", False),
    ],
)
def test_which_names_are_the_configured_predictor(configured: str, named: str, same: bool) -> None:
    config = ExplainerConfig(model_name=NAME, predictor_host=configured)
    assert config.names_predictor(named) is same


def test_an_unreachable_predictor_is_503_not_ready(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    config = ExplainerConfig(
        model_name=NAME,
        predictor_host=f"127.0.0.1:{free_port()}",  # nothing listens there
        hints={"labels": LABELS, "input": {"width": 32, "height": 32}, "output": "logits"},
        timeout=5,
    )
    with TestClient(create_explainer_app(config)) as client:
        assert client.get("/").json() == {"status": "alive"}
        assert client.get("/v2/health/live").json() == {"live": True}
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json() == {"error": "Server is not ready."}
        for answer in (
            client.get(f"/v1/models/{NAME}"),
            client.get(f"/v2/models/{NAME}/ready"),
            client.post(f"/v1/models/{NAME}:explain", json={"instances": [png_b64(half_bright())]}),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"].startswith(f"Model with name {NAME} is not ready.")
