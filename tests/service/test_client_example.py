"""The Python client example of the README, end to end on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
from svc_helpers import FAST, Running, running

matplotlib.use("Agg")


def test_spec_client_example(backend_settings, photo_png: bytes, tmp_path: Path) -> None:
    cat = tmp_path / "cat.png"
    cat.write_bytes(photo_png)
    with running(backend_settings) as svc, svc.client() as client:
        dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(method="kernelshap", **FAST)
        scoring_id = client.score(dep, str(cat)).scoring_id
        assert scoring_id
        exp = client.explanations.create(scoring_id).wait(timeout=120)
        fig = exp.show()
        assert len(fig.axes) == 3
        out = exp.save(tmp_path / "out")

        result = json.loads((out / "result.json").read_text())
        entry = result["explanations"][0]
        assert entry["label"] == "Egyptian cat"
        assert result["method"] == "kernelshap"
        assert result["segmentation"]["count"] == 8
        for kind in ("positive", "negative", "heatmap"):
            pane = out / entry["images"][kind]
            assert pane.read_bytes().startswith(b"\x89PNG")

        tx = client.transactions.get(scoring_id)
        assert tx["label"] == "Egyptian cat" and tx["subscription_id"] == sub.id
        assert client.transactions.image(scoring_id) == photo_png
        assert [e.id for e in client.explanations.list(scoring_id)] == [exp.id]
        assert [t["scoring_id"] for t in sub.transactions()] == [scoring_id]


def test_transactions_newest_first_with_label_filter(shared: Running, small_pngs) -> None:
    with shared.client(shared.new_key("listing")) as client:
        dep = client.deployments.create(name="listing", model="efficientnet-lite0")
        sub = client.subscriptions.create(deployment_id=dep.id)
        ids = [client.score(dep, png).scoring_id for png in small_pngs(5)]
        listed = sub.transactions(limit=3)
        assert [t["scoring_id"] for t in listed] == ids[::-1][:3]
        assert [t["scoring_id"] for t in sub.transactions(limit=3, offset=3)] == ids[::-1][3:]
        label = listed[0]["label"]
        same = sub.transactions(label=label)
        assert same and all(t["label"] == label for t in same)
        assert len(same) == sum(client.transactions.get(i)["label"] == label for i in ids)
