"""docs/api.md's error table agrees with the server: each documented status and code is what a
real request of that kind gets, and malformed JSON is 400 ``bad_request`` on every JSON route."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from svc_helpers import free_port, running

from limner.settings import Settings
from limner.store import Database, create_key

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def documented_errors() -> list[tuple[int, str]]:
    """(status, code) of every row of the table under ``## Errors``."""
    section = API_MD.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    pairs = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            pairs += [(int(cells[0]), code) for code in re.findall(r"`([a-z_]+)`", cells[1])]
    return pairs


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A service with a small pixel limit, a subscribed deployment and one transaction."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        database_url="",
        max_pixels=100_000,
        allowed_urls="127.0.0.1",  # the operator allows loopback model URLs
    )
    with running(settings) as svc:
        db = Database(settings.resolved_database_url())
        admin = create_key(db, "operator", role="admin")
        tenant = create_key(db, "team")  # an ordinary, untrusted key
        db.close()
        auth = {"Authorization": f"Bearer {svc.key}"}
        http = httpx.Client(base_url=svc.url, headers=auth, timeout=120)
        dep = http.post("/v1/deployments", json={"name": "m", "model": "efficientnet-lite0"})
        dep.raise_for_status()
        sub = http.post("/v1/subscriptions", json={"deployment_id": dep.json()["id"]})
        sub.raise_for_status()
        yield {
            "http": http,
            "admin": admin,
            "tenant": tenant,
            "dep": dep.json(),
            "sub": sub.json(),
            "url": svc.url,
        }
        http.close()


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _predict(c: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return c["http"].post(f"/v1/deployments/{c['dep']['id']}/predictions", **kwargs)


def _unreachable_model(c: dict[str, Any]) -> httpx.Response:
    model = f"http://127.0.0.1:{free_port()}/v2/models/gone"
    return c["http"].post(
        "/v1/deployments",
        json={"name": "gone", "model": model},
        headers={"Authorization": f"Bearer {c['admin']}"},
    )


#: A request that must get each documented (status, code).
REQUESTS: dict[tuple[int, str], Callable[[dict[str, Any]], httpx.Response]] = {
    (400, "bad_request"): lambda c: c["http"].post(
        "/v1/explanations", content=b'{"scoring_id": ', headers={"content-type": "application/json"}
    ),
    (400, "invalid_image"): lambda c: _predict(
        c, files=[("file", ("x.png", b"\x89PNG not really", "image/png"))]
    ),
    (401, "unauthorized"): lambda c: httpx.get(f"{c['url']}/v1/deployments", timeout=30),
    (403, "forbidden"): lambda c: c["http"].post(
        "/v1/deployments",
        json={"name": "path", "model": "/etc"},
        headers={"Authorization": f"Bearer {c['tenant']}"},
    ),
    (404, "not_found"): lambda c: c["http"].get("/v1/deployments/0123456789abcdef"),
    (405, "method_not_allowed"): lambda c: c["http"].patch("/v1/deployments"),
    (409, "conflict"): lambda c: c["http"].post(
        "/v1/deployments", json={"name": "m", "model": "efficientnet-lite0"}
    ),
    (413, "payload_too_large"): lambda c: _predict(
        c, files=[("file", ("big.png", _png(400, 300), "image/png"))]
    ),
    (415, "unsupported_media_type"): lambda c: _predict(
        c, content=b"hello", headers={"content-type": "text/plain"}
    ),
    (422, "invalid_input"): lambda c: c["http"].post("/v1/deployments", json={"name": "x"}),
    (422, "model_error"): lambda c: c["http"].post(
        "/v1/deployments",
        data={
            "name": "broken",
            "metadata": '{"labels": ["a", "b"], "input": {"width": 8, "height": 8}}',
        },
        files=[("file", ("model.onnx", b"not an onnx model", "application/octet-stream"))],
    ),
    (503, "model_unavailable"): _unreachable_model,
}

#: Rows whose condition takes a slow server of its own to reach; each is asserted, status, code
#: and ``Retry-After``, by the test named here.
ELSEWHERE = {
    (
        503,
        "busy",
    ): "tests/security/test_attacks.py::test_slow_model_loads_do_not_starve_health_and_scoring",
    (
        429,
        "too_many_requests",
    ): "tests/security/test_limits_jobs.py::"
    "test_a_space_over_its_jobs_in_flight_gets_429_and_others_still_queue",
    (
        504,
        "model_timeout",
    ): "tests/security/test_containment.py::test_an_endless_model_stops_nobody_else",
}


def test_the_table_is_found() -> None:
    pairs = documented_errors()
    assert (400, "bad_request") in pairs and (404, "not_found") in pairs and len(pairs) >= 10


@pytest.mark.parametrize(("status", "code"), documented_errors())
def test_each_documented_error_is_what_the_server_answers(ctx, status: int, code: str) -> None:
    if (status, code) in ELSEWHERE:
        test_file = Path(__file__).resolve().parents[2] / ELSEWHERE[(status, code)].split("::")[0]
        assert f"def {ELSEWHERE[(status, code)].split('::')[1]}(" in test_file.read_text()
        return
    assert (status, code) in REQUESTS, f"no request in this test gets {status} {code}"
    resp = REQUESTS[(status, code)](ctx)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text


def _json_routes(app_doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, ops in app_doc["paths"].items()
        for method, op in ops.items()
        if "application/json" in (op.get("requestBody") or {}).get("content", {})
    ]


def test_malformed_json_is_400_on_every_json_route(ctx) -> None:
    http = ctx["http"]
    doc = http.get("/openapi.json").json()
    values = {
        "deployment_id": ctx["dep"]["id"],
        "subscription_id": ctx["sub"]["id"],
        "name": ctx["dep"]["name"],
        "scoring_id": "no-such-transaction",  # the body is read before the id is looked up
        "explanation_id": "no-such-explanation",
    }
    routes = _json_routes(doc)
    assert ("post", "/v1/explanations") in routes and len(routes) >= 6
    for method, path in routes:
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        resp = http.request(
            method.upper(), url, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400, (method, path, resp.text)
        error = resp.json()["error"]
        if path.startswith("/v2/"):  # the Open Inference shape: {"error": "<message>"}
            assert "not valid JSON" in error, (method, path, resp.text)
        else:
            assert error["code"] == "bad_request", (method, path, resp.text)
