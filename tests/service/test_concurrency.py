"""Many clients at once: no transaction lost or doubled; explanations all finish."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from svc_helpers import FAST, Running, running

from limner.client import APIClient


def test_16_clients_scoring_25_images_leave_400_transactions(backend_settings, small_pngs) -> None:
    with running(backend_settings) as svc:
        check_400_transactions(svc, small_pngs(25))


def check_400_transactions(shared: Running, images: list[bytes]) -> None:
    key = shared.key
    client = APIClient(shared.url, api_key=key)
    dep = client.deployments.create(name="load", model="efficientnet-lite0")
    sub = client.subscriptions.create(deployment_id=dep.id)

    def one_client(_: int) -> list[str]:
        with APIClient(shared.url, api_key=key) as c:
            return [str(c.score(dep, png).scoring_id) for png in images]

    with ThreadPoolExecutor(16) as pool:
        acknowledged = [sid for ids in pool.map(one_client, range(16)) for sid in ids]

    assert len(acknowledged) == len(set(acknowledged)) == 400
    stored = []
    for offset in range(0, 400, 150):
        stored += [t["scoring_id"] for t in sub.transactions(limit=150, offset=offset)]
    assert sorted(stored) == sorted(acknowledged)
    client.close()


def test_8_explanations_posted_at_once_all_finish(shared: Running, small_pngs) -> None:
    key = shared.new_key("burst")
    with APIClient(shared.url, api_key=key) as client:
        dep = client.deployments.create(name="burst", model="efficientnet-lite0")
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(method="kernelshap", **FAST)
        ids = [s.scoring_id for s in client.score_many(dep, small_pngs(8))]

    def post(sid: str) -> str:
        with APIClient(shared.url, api_key=key) as c:
            return c.explanations.create(sid).id

    with ThreadPoolExecutor(8) as pool:
        exp_ids = list(pool.map(post, ids))
    with APIClient(shared.url, api_key=key) as client:
        for eid in exp_ids:
            exp = client.explanations.get(eid).wait(timeout=150)
            assert exp.status == "finished" and exp.result is not None
            assert exp.result["model_evaluations"] >= 64
        assert sorted(e.scoring_id for e in client.explanations.list()) == sorted(ids)
