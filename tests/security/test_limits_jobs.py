"""One space cannot starve the others: explanation settings are capped (422 naming the limit),
and a space with too many jobs in flight gets 429 with ``Retry-After`` while another space still
gets its job queued. Through a real ``limner serve``; the jobs score against a loopback model
that never answers, so they stay queued or running for the whole test."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from limits_helpers import Server, limner_serve, silent_scorer, solid_png

pytestmark = pytest.mark.slow

MAX_JOBS = 3


@pytest.fixture(scope="module")
def scorer() -> Iterator[str]:
    with silent_scorer() as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, scorer: str) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits-jobs")
    env = {
        "LIMNER_MAX_JOBS_PER_SPACE": str(MAX_JOBS),
        "LIMNER_MAX_SAMPLES": "500",
        "LIMNER_MAX_SEGMENTS": "50",
        "LIMNER_ALLOWED_URLS": scorer.rsplit("/v2/", 1)[0] + "/",  # the operator allows it
    }
    with limner_serve(tmp, **env) as srv:
        yield srv


def _space_with_a_transaction(server: Server, key: str, scorer: str) -> str:
    """An external subscription with explanations on and one record; its id."""
    with server.http(key) as http:
        sub = http.post(
            "/v1/subscriptions",
            json={"name": "silent", "scoring_url": scorer, "labels": ["a", "b"]},
        )
        assert sub.status_code == 201, sub.text
        sub_id = sub.json()["id"]
        on = http.put(f"/v1/subscriptions/{sub_id}/explainability", json={"enabled": True})
        assert on.status_code == 200, on.text
        image = base64.b64encode(solid_png(32, 32)).decode()
        record = {"scoring_id": "rec-1", "image": image, "probabilities": [0.3, 0.7]}
        logged = http.post(
            f"/v1/subscriptions/{sub_id}/payload-records", json={"records": [record]}
        )
        assert logged.status_code == 200, logged.text
    return str(sub_id)


@pytest.fixture(scope="module")
def spaces(server: Server, scorer: str) -> dict[str, str]:
    other = server.new_key("other")
    server.keys["other"] = other
    return {
        "default": _space_with_a_transaction(server, server.key, scorer),
        "other": _space_with_a_transaction(server, other, scorer),
    }


def test_sample_and_segment_settings_over_the_limits_are_422(
    server: Server, spaces: dict[str, str]
) -> None:
    path = f"/v1/subscriptions/{spaces['default']}/explainability"
    with server.http() as http:
        for settings, limit, name in (
            ({"samples": 501}, "500", "LIMNER_MAX_SAMPLES"),
            ({"max_samples": 501}, "500", "LIMNER_MAX_SAMPLES"),
            ({"segments": 51}, "50", "LIMNER_MAX_SEGMENTS"),
        ):
            r = http.put(path, json=settings)
            assert r.status_code == 422, r.text
            assert name in r.json()["error"]["message"]
            assert f"limit of {limit}" in r.json()["error"]["message"]
            r = http.post("/v1/explanations", json={"scoring_id": "rec-1", **settings})
            assert r.status_code == 422, r.text
            assert name in r.json()["error"]["message"]
        listed = http.get("/v1/explanations").json()["explanations"]
    assert listed == []  # nothing was queued


def test_a_space_over_its_jobs_in_flight_gets_429_and_others_still_queue(
    server: Server, spaces: dict[str, str]
) -> None:
    with server.http() as http:
        first = http.post("/v1/explanations", json={"scoring_id": "rec-1", "method": "lime"})
        assert first.status_code == 202, first.text
        # LIME's own default (1000 samples) is held to the limit.
        read = http.get(f"/v1/explanations/{first.json()['id']}").json()
        assert read["settings"]["samples"] == 500
        assert read["scoring_id"] == "rec-1"
        for _ in range(MAX_JOBS - 1):
            assert http.post("/v1/explanations", json={"scoring_id": "rec-1"}).status_code == 202
        refused = http.post("/v1/explanations", json={"scoring_id": "rec-1"})
        statuses = {e["status"] for e in http.get("/v1/explanations").json()["explanations"]}
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert int(refused.headers["Retry-After"]) >= 1
    assert "LIMNER_MAX_JOBS_PER_SPACE" in refused.json()["error"]["message"]
    assert statuses <= {"queued", "running"}  # the jobs really are still in flight
    with server.http(server.keys["other"]) as http:
        other = http.post("/v1/explanations", json={"scoring_id": "rec-1"})
        assert other.status_code == 202, other.text
        assert other.json()["status"] == "queued"
