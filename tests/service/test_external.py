"""External models: payload records logged idempotently, explained through their scoring URL."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi import FastAPI
from svc_helpers import FAST, Running, free_port, running

from limner.client import APIClient, ExplanationFailedError
from limner.imaging import encode_png
from limner.protocol import InferenceRequest, InferenceResponse, decode_tensor, encode_tensor
from limner.service import EmbeddedServer
from limner.settings import Settings


def brightness(images: np.ndarray) -> np.ndarray:
    """A real (if simple) binary classifier: P(bright) from the mean brightness."""
    mean = images.reshape(len(images), -1).mean(axis=1)
    p = 1.0 / (1.0 + np.exp(-(mean - 128.0) / 16.0))
    return np.stack([1 - p, p], axis=1).astype(np.float32)


def external_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v2/models/bright/infer")
    def infer(req: InferenceRequest) -> InferenceResponse:
        x = decode_tensor(req.inputs[0])
        return InferenceResponse(
            model_name="bright", outputs=[encode_tensor("probability", brightness(x))]
        )

    return app


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """The service, with the loopback external models of these tests allowed by the operator."""
    data_dir = tmp_path_factory.mktemp("limner-data")
    settings = Settings(data_dir=data_dir, database_url="", workers=4, allowed_urls="127.0.0.1")
    with running(settings) as r:
        yield r


@pytest.fixture(scope="module")
def external():
    with EmbeddedServer(external_app()) as server:
        yield f"{server.url}/v2/models/bright"


def half_bright() -> np.ndarray:
    image = np.full((48, 64, 3), 40, np.uint8)
    image[:, 32:] = 230
    return image


def test_payload_records_are_idempotent_and_explained(shared: Running, external: str) -> None:
    with APIClient(shared.url, api_key=shared.new_key("external")) as client:
        sub = client.subscriptions.create(
            name="bright",
            scoring_url=external,
            labels=["dark", "bright"],
            input={"width": 32, "height": 32},
            problem_type="binary",
        )
        image = half_bright()
        probs = brightness(image[None])[0].tolist()
        record = {
            "scoring_id": "ext-0001",
            "image": base64.b64encode(encode_png(image)).decode(),
            "probabilities": probs,
        }
        assert sub.log_records([record]) == [{"scoring_id": "ext-0001", "created": True}]
        assert sub.log_records([record]) == [{"scoring_id": "ext-0001", "created": False}]
        anonymous = sub.log_records([{k: v for k, v in record.items() if k != "scoring_id"}])
        assert anonymous[0]["created"] and anonymous[0]["scoring_id"] != "ext-0001"
        listed = sub.transactions()
        assert [t["scoring_id"] for t in listed] == [anonymous[0]["scoring_id"], "ext-0001"]
        tx = client.transactions.get("ext-0001")
        assert tx["label"] == ("bright" if probs[1] > 0.5 else "dark")

        sub.enable_explainability(method="kernelshap", **FAST)
        exp = client.explanations.create("ext-0001", classes=["bright"]).wait(timeout=120)
        entry = exp.result["explanations"][0]
        assert entry["label"] == "bright"
        # the right half is bright: its regions push "bright" up
        right = [r for r in entry["regions"] if r["bbox"][0] >= 32]
        left = [r for r in entry["regions"] if r["bbox"][2] <= 32]
        assert sum(r["weight"] for r in right) > 0 > sum(r["weight"] for r in left)


def test_records_with_wrong_probability_count_are_422(shared: Running, external: str) -> None:
    import httpx

    key = shared.new_key("external-bad")
    with APIClient(shared.url, api_key=key) as client:
        sub = client.subscriptions.create(
            name="bright", scoring_url=external, labels=["dark", "bright"]
        )
    record = {"image": base64.b64encode(encode_png(half_bright())).decode(), "probabilities": [1]}
    resp = httpx.post(
        f"{shared.url}/v1/subscriptions/{sub.id}/payload-records",
        json={"records": [record]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_input"


def test_unreachable_model_fails_its_job_readably(shared: Running) -> None:
    with APIClient(shared.url, api_key=shared.new_key("external-down")) as client:
        sub = client.subscriptions.create(
            name="down",
            scoring_url=f"http://127.0.0.1:{free_port()}/v2/models/down",
            labels=["dark", "bright"],
        )
        image = base64.b64encode(encode_png(half_bright())).decode()
        sid = sub.log_records([{"image": image, "probabilities": [0.5, 0.5]}])[0]["scoring_id"]
        sub.enable_explainability(**FAST)
        job = client.explanations.create(sid)
        with pytest.raises(ExplanationFailedError, match="cannot be reached"):
            job.wait(timeout=60)
        assert job.status == "failed"
        assert client.transactions.get(sid)["scoring_id"] == sid  # the transaction is intact
