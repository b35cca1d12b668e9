"""Progress of a running explanation only goes up, for every method (polled through the API)."""

from __future__ import annotations

import itertools
import time

import pytest
from svc_helpers import Running

from limner.client import APIClient


@pytest.fixture(scope="module")
def ctx(shared: Running, photo_png: bytes):
    client = APIClient(shared.url, api_key=shared.new_key("progress"))
    dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
    sub = client.subscriptions.create(deployment_id=dep.id)
    sub.enable_explainability(method="kernelshap")
    scoring_id = client.score(dep, photo_png).scoring_id
    yield client, scoring_id
    client.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides", [{}, {"method": "lime", "samples": 300}, {"method": "occlusion"}]
)
def test_progress_never_goes_back(ctx, overrides) -> None:
    client, scoring_id = ctx
    exp = client.explanations.create(scoring_id, top_k=2, **overrides)
    seen = []
    deadline = time.monotonic() + 300
    while not exp.done and time.monotonic() < deadline:
        seen.append(exp.refresh().progress)
        time.sleep(0.05)
    assert exp.status == "finished", exp.error
    assert seen[-1] == 1.0
    assert len(set(seen)) >= 3, seen  # it was seen moving, not only queued and finished
    assert all(b >= a for a, b in itertools.pairwise(seen)), seen
    result = exp.result
    assert result is not None and "regions" in result["explanations"][0]["images"]
