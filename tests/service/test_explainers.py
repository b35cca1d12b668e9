"""Amortized explainers in the service: trained for a deployment from its logged transactions
or from uploaded images (a job with progress, versioned, tied to the artifact's SHA-256), used
by method ``amortized``, trained on their own after ``explainer_after`` transactions and used
by ``auto_explain``; and the attacks: another space's key finds nothing, a viewer cannot train,
trainings count against the space's jobs limit, the stored explainer is data."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from svc_helpers import FAST, Running, TinyConv, deploy_onnx, running

from limner.imaging import encode_png
from limner.settings import Settings
from limner.store import Database, new_id
from limner.store.blobs import open_blob_store
from limner.store.tables import Deployment, ExplainerJob

#: Training settings that keep the tests quick (a 16×16 two-class model).
QUICK = {
    "pairs": 4,
    "epochs": 3,
    "calibration_images": 2,
    "reference_samples": 64,
    "baseline": "gray",
}


def _http(run: Running, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=run.url, headers={"Authorization": f"Bearer {key or run.key}"}, timeout=120
    )


def _wait(http: httpx.Client, explainer_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = http.get(f"/v1/explainers/{explainer_id}").json()
        if row["status"] in ("finished", "failed"):
            return dict(row)
        time.sleep(0.2)
    raise AssertionError(f"explainer {explainer_id} still {row['status']}")


def _db_rows(run: Running) -> list[ExplainerJob]:
    db = Database(run.settings.resolved_database_url())
    try:
        with db.session() as s:
            return list(s.query(ExplainerJob).all())
    finally:
        db.close()


@pytest.fixture(scope="module")
def ctx(shared: Running, small_pngs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny ONNX deployment with its subscription, 12 scored transactions, and a finished
    explainer trained from them."""
    client = shared.client()
    http = _http(shared)
    dep = deploy_onnx(client, "tiny-explained", TinyConv(), tmp_path_factory.mktemp("onnx"))
    sub = client.subscriptions.create(deployment_id=dep.id)
    assert http.put(
        f"/v1/subscriptions/{sub.id}/explainability", json={"method": "kernelshap", **FAST}
    ).is_success
    client.score_many(dep, small_pngs(12))
    queued = http.post(f"/v1/deployments/{dep.id}/explainers", json={"limit": 12, **QUICK})
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "queued" and queued.json()["version"] == 1
    trained = _wait(http, queued.json()["id"])
    sha = http.get(f"/v1/deployments/{dep.id}").json()["artifact_sha256"]
    assert sha
    return {
        "client": client, "http": http, "dep": dep, "sub": sub, "sha": sha, "trained": trained
    }  # fmt: skip


def test_an_explainer_trains_from_the_logged_transactions(ctx) -> None:
    trained, dep = ctx["trained"], ctx["dep"]
    assert trained["status"] == "finished", trained["error"]
    assert trained["source"] == "transactions" and trained["progress"] == 1.0
    assert trained["training_images"] + trained["heldout_images"] == 12
    assert trained["heldout_error"] is not None and trained["heldout_error"] >= 0
    assert trained["model_sha256"] == ctx["sha"] and trained["current"] is True
    listed = ctx["http"].get(f"/v1/deployments/{dep.id}/explainers").json()["explainers"]
    assert [e["id"] for e in listed] == [trained["id"]]


def test_method_amortized_explains_with_the_deployments_explainer(ctx, small_pngs) -> None:
    sid = ctx["client"].score(ctx["dep"], small_pngs(13)[-1]).scoring_id
    exp = ctx["client"].explanations.create(sid, method="amortized").wait()
    result = exp.result
    assert exp.status == "finished", exp.error
    info = result["amortized"]
    assert info["model_sha256"] == ctx["sha"]
    assert info["trained_on"] == ctx["trained"]["training_images"]
    assert info["check"]["coalitions"] > 0
    if not info["outside"]:
        assert result["method"] == "amortized" and result["stop_reason"] == "amortized"
    else:  # the check sent it to the per-image default, and says so
        assert result["method"] == info["fallback"] == "kernelshap"
        assert "amortized explainer" in " ".join(result["explanations"][0]["warnings"])


def test_an_explanation_without_curves_has_null_faithfulness_and_a_report(ctx, small_pngs):
    http = ctx["http"]
    sid = ctx["client"].score(ctx["dep"], small_pngs(14)[-1]).scoring_id
    exp = ctx["client"].explanations.create(sid, method="kernelshap", curves=False).wait()
    assert exp.status == "finished", exp.error
    first = exp.result["explanations"][0]
    assert first["deletion_auc"] is None and first["sufficient_regions"] is None
    assert first["regions"] and exp.data["settings"]["curves"] is False
    report = http.get(f"/v1/explanations/{exp.id}/report.html")
    assert report.status_code == 200 and "without its deletion and insertion curves" in report.text
    for body in ({"method": "integrated-gradients", "curves": False}, {"curves": "maybe"}):
        answer = http.post("/v1/explanations", json={"scoring_id": sid, **body})
        assert answer.status_code == 422, body
    put = http.put(
        f"/v1/subscriptions/{ctx['sub'].id}/explainability",
        json={"method": "gradcam", "curves": False},
    )
    assert put.status_code == 422 and "region methods" in put.json()["error"]["message"]


def test_the_stored_explainer_is_safetensors_data(ctx, shared: Running) -> None:
    row = next(r for r in _db_rows(shared) if r.id == ctx["trained"]["id"])
    data = open_blob_store(shared.settings.resolved_blob_url()).get(row.weights_blob)
    header_length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_length])  # a safetensors header: tensors only
    assert header and all("dtype" in v for k, v in header.items() if k != "__metadata__")
    assert row.meta["model"]["sha256"] == ctx["sha"]
    assert row.images_blob is None  # transactions' images are never copied


def test_an_upload_trains_a_new_version_and_its_images_are_released(
    ctx, shared: Running, small_pngs, tmp_path: Path
) -> None:
    paths = []
    for i, png in enumerate(small_pngs(10)):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png)
    done = ctx["client"].explainers.train(ctx["dep"], images=paths, wait=True, timeout=180, **QUICK)
    assert done["status"] == "finished", done["error"]
    assert done["source"] == "upload" and done["version"] == 2 and done["current"] is True
    assert done["training_images"] + done["heldout_images"] == 10
    row = next(r for r in _db_rows(shared) if r.id == done["id"])
    assert row.images_blob is None  # the upload is not kept once the training is over
    listed = ctx["client"].explainers.list(ctx["dep"])
    assert [(e["version"], e["current"]) for e in listed] == [(2, True), (1, False)]


def test_bad_training_requests_are_refused(ctx, shared: Running, small_pngs, tmp_path) -> None:
    http, dep = ctx["http"], ctx["dep"]
    path = f"/v1/deployments/{dep.id}/explainers"
    before = len(_db_rows(shared))
    for body, words in [
        ({"pairs": 1}, "pairs"),
        ({"wizard": True}, "wizard"),
        ({"reference_samples": 20000}, "LIMNER_MAX_SAMPLES"),
        ({"source": "upload"}, "multipart"),
    ]:
        answer = http.post(path, json=body)
        assert answer.status_code == 422 and words in answer.json()["error"]["message"], body
    few = http.post(path, files=[("images", ("a.png", png)) for png in small_pngs(3)])
    assert few.status_code == 422 and "at least 10" in few.json()["error"]["message"]
    broken = http.post(path, files=[("images", ("x.png", b"not an image"))] * 10)
    assert broken.status_code in (400, 422) and "Traceback" not in broken.text
    assert http.post(path, content=b"<x/>", headers={"content-type": "text/xml"}).status_code == 415
    # small files that would decode to 10 × 9 megapixels: refused on their headers
    bomb = encode_png(np.zeros((3000, 3000, 3), np.uint8))
    assert len(bomb) < 200_000
    big = http.post(path, files=[("images", (f"{i}.png", bomb)) for i in range(10)])
    assert big.status_code == 413 and "LIMNER_MAX_REQUEST_PIXELS" in big.text
    other = deploy_onnx(ctx["client"], "tiny-untrained", TinyConv(), tmp_path)
    other_sub = ctx["client"].subscriptions.create(deployment_id=other.id)
    http.put(f"/v1/subscriptions/{other_sub.id}/explainability", json=FAST)
    sid = ctx["client"].score(other, small_pngs(1)[0]).scoring_id
    answer = http.post("/v1/explanations", json={"scoring_id": sid, "method": "amortized"})
    assert answer.status_code == 422
    assert f"/v1/deployments/{other.id}/explainers" in answer.json()["error"]["message"]
    assert http.post(f"/v1/deployments/{other.id}/explainers", json={}).status_code == 422
    assert len(_db_rows(shared)) == before  # nothing was queued


def test_another_space_finds_nothing_and_a_viewer_cannot_train(ctx, shared: Running) -> None:
    dep, trained = ctx["dep"], ctx["trained"]
    before = len(_db_rows(shared))
    stranger = _http(shared, shared.new_key("explainer-stranger"))
    assert stranger.post(f"/v1/deployments/{dep.id}/explainers", json=QUICK).status_code == 404
    assert stranger.get(f"/v1/deployments/{dep.id}/explainers").status_code == 404
    assert stranger.get(f"/v1/explainers/{trained['id']}").status_code == 404
    viewer = _http(shared, shared.new_key("default", role="viewer"))
    refused = viewer.post(f"/v1/deployments/{dep.id}/explainers", json=QUICK)
    assert refused.status_code == 403
    assert viewer.get(f"/v1/explainers/{trained['id']}").status_code == 200  # a viewer reads
    assert len(_db_rows(shared)) == before
    audit = ctx["http"].get("/v1/audit", params={"action": "explainer.train"}).json()
    outcomes = {r["outcome"] for r in audit["records"]}
    assert {"ok", "denied"} <= outcomes


def test_trainings_count_against_the_spaces_jobs_limit(
    tmp_path: Path, small_pngs, tmp_path_factory
) -> None:
    settings = Settings(data_dir=tmp_path, database_url="", workers=1, max_jobs_per_space=1)
    with running(settings) as run:
        client, http = run.client(), _http(run)
        dep = deploy_onnx(client, "tiny-limited", TinyConv(), tmp_path_factory.mktemp("o"))
        sub = client.subscriptions.create(deployment_id=dep.id)
        http.put(f"/v1/subscriptions/{sub.id}/explainability", json=FAST)
        scored = client.score_many(dep, small_pngs(12))
        # a training of the space waiting in the queue (as one is after a restart)
        db = Database(settings.resolved_database_url())
        with db.session() as s:
            space_id = s.get(Deployment, dep.id).space_id
            s.add(
                ExplainerJob(
                    id=new_id(), space_id=space_id, deployment_id=dep.id, version=1,
                    status="queued", source="transactions", settings={}, progress=0.0,
                )
            )  # fmt: skip
        db.close()
        second = http.post(f"/v1/deployments/{dep.id}/explainers", json=QUICK)
        assert second.status_code == 429, second.text
        assert "explainer trainings" in second.json()["error"]["message"]
        explain = http.post("/v1/explanations", json={"scoring_id": scored[0].scoring_id})
        assert explain.status_code == 429
        assert len(_db_rows(run)) == 1


def test_explainer_after_trains_on_its_own_and_auto_explain_uses_it(
    shared: Running, small_pngs, tmp_path: Path
) -> None:
    client, http = shared.client(), _http(shared)
    dep = deploy_onnx(client, "tiny-auto", TinyConv(), tmp_path)
    sub = client.subscriptions.create(deployment_id=dep.id)
    settings = {**FAST, "auto_explain": True, "explainer_after": 10}
    assert http.put(f"/v1/subscriptions/{sub.id}/explainability", json=settings).is_success
    first = client.score_many(dep, small_pngs(10))
    rows = client.explainers.list(dep)
    assert len(rows) == 1 and rows[0]["source"] == "transactions"  # queued by the 10th
    trained = _wait(http, rows[0]["id"], timeout=300)
    assert trained["status"] == "finished", trained["error"]
    # before the explainer existed, auto_explain used the subscription's method
    early = client.explanations.list(scoring_id=first[0].scoring_id)
    assert [e.data["settings"]["method"] for e in early] == ["kernelshap"]
    # auto_explain's jobs are background work: they wait while the service is scoring
    foreground = shared.server.app.state.limner.foreground
    with foreground.busy():
        later = client.score_many(dep, small_pngs(13)[-3:])
        time.sleep(1.0)
        waiting = [client.explanations.list(scoring_id=s.scoring_id)[0] for s in later]
        assert {e.status for e in waiting} == {"queued"}
        assert all(e.data["settings"]["background"] is True for e in waiting)
    for scored in later:
        found = client.explanations.list(scoring_id=scored.scoring_id)
        assert len(found) == 1 and found[0].data["settings"]["method"] == "amortized"
        assert found[0].wait().status == "finished"
        assert found[0].data["requested_by"] == "limner (subscription settings)"
    client.score_many(dep, small_pngs(11)[-1:])
    assert len(client.explainers.list(dep)) == 1  # explainer_after trains once
    # deleting the deployment deletes its explainers and their weights
    weights = next(r.weights_blob for r in _db_rows(shared) if r.id == trained["id"])
    blobs = open_blob_store(shared.settings.resolved_blob_url())
    assert blobs.exists(weights)
    assert http.delete(f"/v1/deployments/{dep.id}", params={"purge": "true"}).status_code == 204
    assert http.get(f"/v1/explainers/{trained['id']}").status_code == 404
    assert not blobs.exists(weights)


def test_a_training_cut_off_by_a_restart_runs_again(
    tmp_path: Path, small_pngs, tmp_path_factory
) -> None:
    settings = Settings(data_dir=tmp_path, database_url="", workers=1)
    with running(settings) as run:
        client = run.client()
        dep = deploy_onnx(client, "tiny-restarted", TinyConv(), tmp_path_factory.mktemp("o"))
        client.subscriptions.create(deployment_id=dep.id)
        client.score_many(dep, small_pngs(12))
    # the replica stopped while it was training (its row still says running, and whose)
    db = Database(settings.resolved_database_url())
    with db.session() as s:
        row = ExplainerJob(
            id=new_id(), space_id=s.get(Deployment, dep.id).space_id, deployment_id=dep.id,
            version=1, status="running", source="transactions", progress=0.3, stage="games",
            settings={**QUICK, "limit": 12, "seed": 0}, owner=settings.resolved_replica_id(),
        )  # fmt: skip
        s.add(row)
    db.close()
    with running(settings) as run:
        done = _wait(_http(run), row.id)
    assert done["status"] == "finished", done["error"]
    assert done["training_images"] + done["heldout_images"] == 12
