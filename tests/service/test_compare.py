"""Comparisons: one transaction explained by two real deployments of the same labels (tiny ONNX
classifiers with different weights and input sizes) or by two methods, on one segmentation.

The region maps of the group's explanations are the same (the shared map, every RESULT's boxes
and areas, the ``regions`` panes), and the agreement the service reports is what scipy computes
from the RESULTs' weights. Around it: the refusals (labels that differ, another space's rows,
a retired deployment, too few explanations) and the viewer, who may compare, in the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import stats
from sqlalchemy import select
from svc_helpers import Running

from limner.client import APIClient, ExplanationFailedError
from limner.explain.shared_regions import load_regions
from limner.imaging import encode_png
from limner.store import Database, open_blob_store
from limner.store.audit import AuditQuery, query
from limner.store.tables import Explanation, Space

#: Quick settings with a real (slic) segmentation, so that sharing the regions means something.
SETTINGS = {"samples": 64, "segmentation": "slic", "segments": 12, "baseline": "gray"}


def tiny_classifier(path: Path, *, size: int, channels: tuple[float, float, float]) -> Path:
    """A real ONNX classifier of size×size NCHW images: P(bright) from the channel means,
    weighted by ``channels``."""
    weights = np.asarray(channels, np.float32) / float(sum(channels))
    w = np.stack([-8.0 * weights, 8.0 * weights], axis=1).astype(np.float32)
    b = np.array([4.0, -4.0], np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probability"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def meta(name: str, size: int, labels: tuple[str, str] = ("dark", "bright")) -> dict:
    return {
        "name": name,
        "labels": list(labels),
        "input": {"width": size, "height": size, "layout": "NCHW", "dtype": "float32",
                  "scale": 1 / 255},
        "output": "probabilities",
        "problem_type": "binary",
    }  # fmt: skip


@dataclass
class Ctx:
    svc: Running
    client: APIClient
    http: httpx.Client
    deps: dict[str, str]  # name -> id
    scoring_id: str
    sub_id: str


@pytest.fixture(scope="module")
def ctx(shared: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    from skimage import data

    d = tmp_path_factory.mktemp("models")
    client = shared.client()
    deps = {}
    for name, size, channels, labels in (
        ("even", 8, (1.0, 1.0, 1.0), ("dark", "bright")),
        ("reddish", 16, (4.0, 1.0, 0.2), ("dark", "bright")),
        ("greenish", 12, (0.2, 4.0, 1.0), ("dark", "bright")),
        ("other-labels", 8, (1.0, 1.0, 1.0), ("dark", "light")),
    ):
        path = tiny_classifier(d / f"{name}.onnx", size=size, channels=channels)
        dep = client.deployments.create(name=name, file=path, metadata=meta(name, size, labels))
        deps[name] = dep.id
    sub = client.subscriptions.create(deployment_id=deps["even"])
    sub.enable_explainability(**SETTINGS)
    image = np.ascontiguousarray(data.coffee()[100:260, 150:350])
    scoring_id = str(client.score(deps["even"], encode_png(image)).scoring_id)
    http = httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {shared.key}"}, timeout=120
    )
    yield Ctx(shared, client, http, deps, scoring_id, sub.id)
    http.close()
    client.close()


def results(ctx: Ctx, comparison: dict) -> list[dict]:
    """The explanations of a comparison, as ``GET /v1/explanations/{id}`` gives them."""
    out = []
    for e in comparison["explanations"]:
        got = ctx.http.get(f"/v1/explanations/{e['id']}")
        assert got.status_code == 200, got.text
        out.append(got.json())
    return out


def finished(ctx: Ctx, comparison_id: str) -> dict:
    ctx.client.comparisons.get(comparison_id).wait(timeout=120)
    got = ctx.http.get(f"/v1/comparisons/{comparison_id}")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["status"] == "finished", body
    return body


def assert_same_regions(ctx: Ctx, exps: list[dict]) -> None:
    """Every explanation was made on one region map: the stored shared map, and every RESULT's
    region boxes and areas and ``regions`` pane, are the same."""
    keys = {e["settings"]["shared_regions"] for e in exps}
    assert len(keys) == 1
    shared = load_regions(open_blob_store(str(ctx.svc.settings.resolved_blob_url())).get(*keys))
    boxes, areas = shared.boxes_and_areas
    expected = {i: (list(map(int, boxes[i])), int(areas[i])) for i in range(shared.count)}
    for e in exps:
        result = e["result"]
        assert result["segmentation"]["count"] == shared.count
        assert (result["width"], result["height"]) == shared.original_size
        for item in result["explanations"]:
            assert {r["id"]: (r["bbox"], r["area"]) for r in item["regions"]} == expected
    ci = exps[0]["result"]["explanations"][0]["class_index"]
    panes = {
        ctx.http.get(f"/v1/explanations/{e['id']}/images/{ci}/regions.png").content for e in exps
    }
    assert len(panes) == 1


def weights_of(exp: dict, class_index: int) -> np.ndarray:
    item = next(i for i in exp["result"]["explanations"] if i["class_index"] == class_index)
    w = np.zeros(item["total_features"])
    for r in item["regions"]:
        w[r["id"]] = r["weight"]
    return w


def assert_agreement_is_scipys(body: dict, exps: list[dict]) -> None:
    """The region table, Spearman, top-3 overlap and disagreements, recomputed from the
    RESULTs' weights."""
    ids = [e["id"] for e in exps]
    assert body["classes"], body
    for cls in body["classes"]:
        ci = cls["class_index"]
        columns = [weights_of(e, ci) for e in exps]
        table = np.array([r["weights"] for r in sorted(cls["regions"], key=lambda r: r["id"])])
        np.testing.assert_allclose(table.T, np.array(columns))
        pairs = {(p["a"], p["b"]): p for p in cls["agreement"]}
        assert len(pairs) == len(ids) * (len(ids) - 1) // 2
        tops = [set(np.lexsort((np.arange(len(w)), -w))[:3].tolist()) for w in columns]
        for i, j in combinations(range(len(ids)), 2):
            p = pairs[(ids[i], ids[j])]
            rho = stats.spearmanr(columns[i], columns[j]).statistic
            assert p["spearman"] == pytest.approx(rho, abs=1e-4)
            assert p["top3_overlap"] == len(tops[i] & tops[j])
            assert set(p["top3_shared"]) == tops[i] & tops[j]
        top_gaps = {d["region"] for d in cls["disagreements"] if d["kind"] == "top3"}
        assert top_gaps == set.union(*tops) - set.intersection(*tops)
        for d in cls["disagreements"]:
            assert f"#{d['region']}" in d["text"] and d["inside"] and d["outside"]
            if d["kind"] == "sign":
                k = d["region"]
                assert all(columns[ids.index(x)][k] > 0 for x in d["inside"])
                assert all(columns[ids.index(x)][k] < 0 for x in d["outside"])


def test_two_deployments_on_one_segmentation(ctx: Ctx) -> None:
    made = ctx.http.post(
        "/v1/comparisons",
        json={"scoring_id": ctx.scoring_id, "deployment_ids": [ctx.deps["even"], "reddish"]},
    )
    assert made.status_code == 202, made.text
    queued = made.json()
    assert queued["status"] == "queued" and queued["scoring_id"] == ctx.scoring_id
    assert [(e["deployment"], e["method"]) for e in queued["explanations"]] == [
        ("even", "kernelshap"),
        ("reddish", "kernelshap"),
    ]
    body = finished(ctx, queued["comparison_id"])
    exps = results(ctx, body)
    # each explained by its own deployment's model (8×8 and 16×16 inputs), the same classes
    assert [e["result"]["model"] for e in exps] == ["even", "reddish"]
    tx = ctx.client.transactions.get(ctx.scoring_id)
    order = tuple(p["class_index"] for p in tx["predictions"])  # the transaction's, for both
    assert {tuple(i["class_index"] for i in e["result"]["explanations"]) for e in exps} == {order}
    assert_same_regions(ctx, exps)
    assert_agreement_is_scipys(body, exps)
    assert body["segmentation"] == {
        "algorithm": "slic",
        "count": exps[0]["result"]["segmentation"]["count"],
    }
    db = Database(ctx.svc.settings.resolved_database_url())
    with db.session() as s:
        rows = {e.id: e for e in s.scalars(select(Explanation).filter_by(compare_group=body["id"]))}
    db.close()
    assert rows[exps[0]["id"]].deployment_id is None  # the transaction's own model
    assert rows[exps[1]["id"]].deployment_id == ctx.deps["reddish"]


def test_two_methods_on_one_deployment_with_the_client(ctx: Ctx) -> None:
    comparison = ctx.client.comparisons.create(
        ctx.scoring_id, methods=["kernelshap", "occlusion"], classes=["bright"]
    )
    assert [e.name for e in comparison.explanations] == ["even · kernelshap", "even · occlusion"]
    comparison.wait(timeout=120)
    exps = results(ctx, comparison.data)
    assert [e["settings"]["method"] for e in exps] == ["kernelshap", "occlusion"]
    assert [e["result"]["method"] for e in exps] == ["kernelshap", "occlusion"]
    assert_same_regions(ctx, exps)
    assert_agreement_is_scipys(comparison.data, exps)
    (pair,) = comparison.agreement
    rho = stats.spearmanr(weights_of(exps[0], 1), weights_of(exps[1], 1)).statistic
    assert pair.label == "bright" and pair.spearman == pytest.approx(rho, abs=1e-4)
    assert len(comparison.regions(1)) == exps[0]["result"]["segmentation"]["count"]
    assert comparison.explanations[1].explanation().result == exps[1]["result"]


def test_a_gradient_method_weighs_the_same_regions(ctx: Ctx) -> None:
    """Grad-CAM (run inside the model's worker) sums its pixel attribution over the shared
    regions, like the black-box methods."""
    from skimage import data

    dep = ctx.client.deployments.create(name="lite0", model="efficientnet-lite0")
    sub = ctx.client.subscriptions.create(deployment_id=dep.id)
    sub.enable_explainability(**SETTINGS)
    photo = np.ascontiguousarray(data.chelsea()[50:250, 100:350])
    sid = str(ctx.client.score(dep, encode_png(photo)).scoring_id)
    comparison = ctx.client.comparisons.create(sid, methods=["kernelshap", "gradcam"])
    comparison.wait(timeout=300)
    exps = results(ctx, comparison.data)
    assert [e["result"]["method"] for e in exps] == ["kernelshap", "gradcam"]
    assert "saliency" in exps[1]["result"]["explanations"][0]["images"]
    assert_same_regions(ctx, exps)
    assert_agreement_is_scipys(comparison.data, exps)


def test_three_deployments_disagree_in_words(ctx: Ctx) -> None:
    comparison = ctx.client.comparisons.create(
        ctx.scoring_id, deployments=["even", "reddish", "greenish"], classes=[1]
    ).wait(timeout=120)
    exps = results(ctx, comparison.data)
    assert len({e["result"]["model"] for e in exps}) == 3
    assert_same_regions(ctx, exps)
    assert_agreement_is_scipys(comparison.data, exps)
    assert len(comparison.agreement) == 3
    assert all(
        ("is among the top 3" in t or " raises bright in " in t) for t in comparison.disagreements
    )


def test_labels_that_differ_are_refused_naming_the_difference(ctx: Ctx) -> None:
    got = ctx.http.post(
        "/v1/comparisons",
        json={"scoring_id": ctx.scoring_id, "deployment_ids": ["even", "other-labels"]},
    )
    assert got.status_code == 422, got.text
    message = got.json()["error"]["message"]
    assert "other-labels" in message and "'bright'" in message and "'light'" in message


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 422, "2 to 6 explanations"),
        ({"methods": ["kernelshap", "kernelshap"]}, 422, "once"),
        ({"deployment_ids": ["even", "even"], "methods": ["lime"]}, 422, "twice"),
        ({"methods": ["kernelshap", "lime"], "steps": 16}, 422, "gradient methods only"),
        ({"methods": ["kernelshap", "gradcam"]}, 422, "gradcam"),
        ({"methods": ["kernelshap", "lime"], "segments": 100_000}, 422, ""),
        ({"methods": ["kernelshap", "lime"], "surprise": 1}, 422, ""),
        ({"deployment_ids": ["even", "nope"]}, 404, "nope"),
        ({"methods": ["kernelshap", "lime", "rise", "occlusion"],
          "deployment_ids": ["even", "reddish"]}, 422, "not 8"),
    ],
)  # fmt: skip
def test_bad_comparisons_are_refused(ctx: Ctx, body: dict, status: int, words: str) -> None:
    got = ctx.http.post("/v1/comparisons", json={"scoring_id": ctx.scoring_id, **body})
    assert got.status_code == status, got.text
    assert words in got.json()["error"]["message"]


def test_another_space_sees_nothing(ctx: Ctx, tmp_path: Path) -> None:
    made = ctx.http.post(
        "/v1/comparisons", json={"scoring_id": ctx.scoring_id, "methods": ["lime", "occlusion"]}
    )
    assert made.status_code == 202
    mine = made.json()["id"]
    other_key = ctx.svc.new_key("elsewhere")
    other = ctx.svc.client(other_key)
    theirs = other.deployments.create(
        name="theirs",
        file=tiny_classifier(tmp_path / "theirs.onnx", size=8, channels=(1.0, 1.0, 1.0)),
        metadata=meta("theirs", 8),
    )
    other_http = httpx.Client(
        base_url=ctx.svc.url, headers={"Authorization": f"Bearer {other_key}"}
    )
    # another space's transaction and comparison: not found, as if they did not exist
    got = other_http.post(
        "/v1/comparisons", json={"scoring_id": ctx.scoring_id, "methods": ["lime", "occlusion"]}
    )
    assert got.status_code == 404
    assert other_http.get(f"/v1/comparisons/{mine}").status_code == 404
    assert other_http.get("/v1/comparisons/0123456789abcdef").status_code == 404
    # another space's deployment (same labels): not found either, by id or by name
    for ref in (theirs.id, "theirs"):
        got = ctx.http.post(
            "/v1/comparisons", json={"scoring_id": ctx.scoring_id, "deployment_ids": ["even", ref]}
        )
        assert got.status_code == 404 and ref in got.json()["error"]["message"]
    other_http.close()
    other.close()
    ctx.client.comparisons.get(mine).wait(timeout=120)


def test_a_retired_deployment_is_409(ctx: Ctx, tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "old.onnx", size=8, channels=(1.0, 2.0, 1.0))
    old = ctx.client.deployments.create(name="old", file=path, metadata=meta("old", 8))
    comparison = ctx.client.comparisons.create(
        ctx.scoring_id, deployments=["even", old.id], classes=[1]
    ).wait(timeout=120)
    db = Database(ctx.svc.settings.resolved_database_url())
    with db.session() as s:
        row = s.get(Explanation, comparison.explanations[1].id)
        assert row is not None and row.deployment_id == old.id
        row.exported_at = row.finished_at  # reviewed history: a deletion retires it
    db.close()
    assert ctx.http.delete(f"/v1/deployments/{old.id}").status_code == 204
    got = ctx.http.post(
        "/v1/comparisons", json={"scoring_id": ctx.scoring_id, "deployment_ids": ["even", old.id]}
    )
    assert got.status_code == 409, got.text
    assert "retired" in got.json()["error"]["message"]
    # the comparison made before stays readable, under the retired name
    again = ctx.client.comparisons.get(comparison.id)
    assert again.status == "finished" and again.explanations[1].deployment.startswith(
        "old (retired"
    )
    # a job that still names it (queued before it was retired) fails, saying why
    job = queue_job(ctx, old.id)
    assert "retired" in wait_failed(ctx, job)


def test_a_job_naming_another_spaces_deployment_fails(ctx: Ctx, tmp_path: Path) -> None:
    """Defence in depth: a stored job that names a deployment of another space is not run with
    that space's model."""
    other = ctx.svc.client(ctx.svc.new_key("far-away"))
    theirs = other.deployments.create(
        name="theirs",
        file=tiny_classifier(tmp_path / "theirs.onnx", size=8, channels=(1.0, 1.0, 1.0)),
        metadata=meta("theirs", 8),
    )
    other.close()
    job = queue_job(ctx, theirs.id)
    assert "no longer exists" in wait_failed(ctx, job)


def queue_job(ctx: Ctx, deployment_id: str) -> str:
    """Store a queued explanation of the transaction by ``deployment_id``'s model, as a
    comparison would; the service's runner takes it in on its next look at the store."""
    from limner.store import new_id
    from limner.store.tables import Transaction

    db = Database(ctx.svc.settings.resolved_database_url())
    with db.session() as s:
        tx = s.scalar(select(Transaction).where(Transaction.scoring_id == ctx.scoring_id))
        assert tx is not None
        job = Explanation(
            id=new_id(),
            space_id=tx.space_id,
            transaction_id=tx.id,
            status="queued",
            progress=0.0,
            settings={**SETTINGS, "classes": [1]},
            panes={},
            attempts=0,
            deployment_id=deployment_id,
        )
        s.add(job)
        job_id = job.id
    db.close()
    return job_id


def wait_failed(ctx: Ctx, job_id: str) -> str:
    """The error of ``job_id`` once it failed (it must not finish)."""
    exp = ctx.client.explanations.get(job_id)
    with pytest.raises(ExplanationFailedError):
        exp.wait(timeout=60)
    assert exp.result is None
    return str(exp.error)


def test_a_viewer_may_compare_and_it_is_audited(ctx: Ctx) -> None:
    viewer = ctx.svc.new_key("default", role="viewer")
    http = httpx.Client(
        base_url=ctx.svc.url, headers={"Authorization": f"Bearer {viewer}"}, timeout=60
    )
    made = http.post(
        "/v1/comparisons", json={"scoring_id": ctx.scoring_id, "methods": ["lime", "rise"]}
    )
    assert made.status_code == 202, made.text
    comparison_id = made.json()["id"]
    assert http.get(f"/v1/comparisons/{comparison_id}").status_code == 200
    refused = http.post("/v1/comparisons", json={"scoring_id": ctx.scoring_id})
    assert refused.status_code == 422  # a viewer's mistakes are recorded as well
    db = Database(ctx.svc.settings.resolved_database_url())
    rows, _ = query(db, db_space(db), AuditQuery(action="explanation.compare"), limit=500)
    db.close()
    mine = [r for r in rows if r.target == comparison_id]
    assert len(mine) == 1
    assert mine[0].role == "viewer" and mine[0].outcome == "ok"
    assert mine[0].detail["scoring_id"] == ctx.scoring_id
    assert sorted(mine[0].detail["explanations"]) == sorted(
        e["id"] for e in made.json()["explanations"]
    )
    assert any(r.role == "viewer" and r.outcome == "failed" for r in rows)
    http.close()
    ctx.client.comparisons.get(comparison_id).wait(timeout=120)


def db_space(db: Database) -> str:
    with db.session() as s:
        space_id = s.scalar(select(Space.id).where(Space.name == "default"))
    assert space_id is not None
    return space_id


def test_a_comparison_on_each_backend(backend_settings, tmp_path: Path) -> None:
    """The group is written and read back the same on SQLite and PostgreSQL."""
    from svc_helpers import running

    with running(backend_settings) as svc, svc.client() as client:
        ids = [
            client.deployments.create(
                name=name,
                file=tiny_classifier(tmp_path / f"{name}.onnx", size=size, channels=channels),
                metadata=meta(name, size),
            ).id
            for name, size, channels in (("a", 8, (1.0, 1.0, 1.0)), ("b", 16, (4.0, 1.0, 0.2)))
        ]
        client.subscriptions.create(deployment_id=ids[0]).enable_explainability(**SETTINGS)
        from skimage import data

        sid = str(client.score(ids[0], encode_png(data.astronaut()[:120, :160])).scoring_id)
        comparison = client.comparisons.create(sid, deployments=ids).wait(timeout=120)
        assert [e.deployment_id for e in comparison.explanations] == ids
        assert comparison.status == "finished" and len(comparison.agreement) == 2  # two classes
