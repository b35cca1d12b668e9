"""Attacks on the server's memory, through a real ``limner serve``: a request of 100 images that
each decode to 39.7 MP, four parallel 500 MB chunked uploads without a key, an oversized
chunked upload with a key. Each is refused with a 4xx JSON error, and the server's resident
memory (from ``/proc/<pid>/status``) stays within 1.5 GB of the idle server."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from limits_helpers import (
    MEMORY_BUDGET,
    PeakMemory,
    Server,
    chunked_upload,
    limner_serve,
    solid_png,
)

pytestmark = pytest.mark.slow

#: Just under the per-image limit of 40 MP: 7000 × 5670 = 39.7 MP.
BOMB_SIZE = (7000, 5670)
COPIES = 100
UPLOAD_LIMIT = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits-memory")
    with limner_serve(tmp, LIMNER_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT)) as srv:
        yield srv


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return solid_png(*BOMB_SIZE)


@pytest.fixture(scope="module")
def targets(server: Server) -> dict[str, str]:
    """A deployment (built-in model) and an external subscription of the first key's space."""
    with server.http() as http:
        dep = http.post("/v1/deployments", json={"name": "lite0", "model": "efficientnet-lite0"})
        assert dep.status_code == 201, dep.text
        sub = http.post(
            "/v1/subscriptions",
            json={
                "name": "ext",
                "scoring_url": "http://scorer.invalid/v2/models/ext",
                "labels": ["a", "b"],
            },
        )
        assert sub.status_code == 201, sub.text
    return {"deployment": dep.json()["id"], "subscription": sub.json()["id"]}


def _assert_refused_413(response_status: int, body: dict, memory: PeakMemory, what: str) -> None:
    print(memory.report(what))
    assert response_status == 413, body
    error = body["error"]  # /v2 answers the protocol's {"error": message}
    message = error if isinstance(error, str) else error["message"]
    assert isinstance(error, str) or error["code"] == "payload_too_large"
    assert "64 megapixels per request" in message
    assert memory.growth < MEMORY_BUDGET, memory.report(what)


def test_many_large_images_in_one_prediction_are_refused(
    server: Server, targets: dict[str, str], bomb: bytes
) -> None:
    files = [("file", (f"{i}.png", bomb, "image/png")) for i in range(COPIES)]
    assert sum(len(f[1][1]) for f in files) < 20 * 1024 * 1024  # fits the body limit
    with server.http() as http, PeakMemory(server.proc.pid) as memory:
        r = http.post(f"/v1/deployments/{targets['deployment']}/predictions", files=files)
    _assert_refused_413(r.status_code, r.json(), memory, "100 x 39.7 MP, /v1 predictions")


def test_many_large_images_in_one_infer_are_refused(
    server: Server, targets: dict[str, str], bomb: bytes
) -> None:
    encoded = base64.b64encode(bomb).decode()
    body = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [COPIES], "data": [encoded] * COPIES}
        ]
    }
    with server.http() as http, PeakMemory(server.proc.pid) as memory:
        r = http.post("/v2/models/lite0/infer", json=body)
    _assert_refused_413(r.status_code, r.json(), memory, "100 x 39.7 MP, /v2 infer")


def test_many_large_images_in_payload_records_are_refused(
    server: Server, targets: dict[str, str], bomb: bytes
) -> None:
    encoded = base64.b64encode(bomb).decode()
    records = [
        {"scoring_id": f"bomb-{i}", "image": encoded, "probabilities": [0.5, 0.5]}
        for i in range(COPIES)
    ]
    path = f"/v1/subscriptions/{targets['subscription']}/payload-records"
    with server.http() as http, PeakMemory(server.proc.pid) as memory:
        r = http.post(path, json={"records": records})
        listed = http.get(f"/v1/subscriptions/{targets['subscription']}/transactions")
    _assert_refused_413(r.status_code, r.json(), memory, "100 x 39.7 MP, payload-records")
    assert listed.json()["total"] == 0  # nothing was logged


def test_a_request_within_the_budget_is_scored(server: Server, targets: dict[str, str]) -> None:
    small = solid_png(64, 48)
    files = [("file", (f"{i}.png", small, "image/png")) for i in range(3)]
    with server.http() as http:
        r = http.post(f"/v1/deployments/{targets['deployment']}/predictions", files=files)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3


def test_parallel_unauthenticated_chunked_uploads_are_not_read(
    server: Server, targets: dict[str, str]
) -> None:
    size = 500 * 1024 * 1024

    def attack(headers: dict[str, str]) -> object:
        return chunked_upload(server.port, "/v1/deployments", size, headers=headers, timeout=60)

    attempts = [{}, {"Authorization": "Bearer lmn_guess"}, {}, {"Authorization": "Basic x"}]
    with PeakMemory(server.proc.pid) as memory, ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attack, attempts))
    print(memory.report("4 x 500 MB chunked uploads without a key"))
    for outcome in outcomes:
        assert outcome.status == 401, outcome  # type: ignore[attr-defined]
        assert outcome.sent < size  # type: ignore[attr-defined]
    assert memory.growth < MEMORY_BUDGET, memory.report("unauthenticated uploads")


def test_an_oversized_chunked_upload_with_a_key_is_stopped_at_the_limit(
    server: Server, targets: dict[str, str], tmp_path: Path
) -> None:
    with PeakMemory(server.proc.pid) as memory:
        outcome = chunked_upload(
            server.port, "/v1/deployments", 200 * 1024 * 1024, headers=server.auth(), timeout=60
        )
    print(memory.report("200 MB chunked upload over a 64 MB limit, with a key"))
    assert outcome.status == 413, outcome
    assert memory.growth < MEMORY_BUDGET
    with server.http() as http:
        names = [d["name"] for d in http.get("/v1/deployments").json()["deployments"]]
    assert "big" not in names
