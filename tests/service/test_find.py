"""Finding transactions and explanations: case ids, file names, feedback, every filter of both
lists, the batch request and the JSON Lines export, with a real (tiny ONNX) model."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from svc_helpers import FAST, Running, running

from limner.imaging import encode_png
from limner.settings import Settings
from limner.store import Database
from limner.store.audit import AuditQuery, query
from limner.store.keys import hash_key
from limner.store.tables import ApiKey, Space
from pg import PG_ENV, postgres_schema

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from sec_helpers import TINY_META, tiny_onnx

#: The space's limit of explanations in flight (small, so the batch meets it).
MAX_JOBS = 4


def _png(level: int) -> bytes:
    """A 32×32 image of mean ``level`` with a ramp, so its regions differ."""
    ramp = np.linspace(-40, 40, 32)[None, :, None]
    img = np.clip(np.full((32, 32, 3), float(level)) + ramp, 0, 255).astype(np.uint8)
    return encode_png(img)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class World:
    """A service, keys of space ``find`` and of another space, and what was logged."""

    svc: Running
    http: httpx.Client  # the tenant's
    viewer: httpx.Client
    other: httpx.Client
    dep: dict[str, Any]
    sub: dict[str, Any]
    dep2: dict[str, Any]
    sub2: dict[str, Any]
    tx: dict[str, str] = field(default_factory=dict)  # name -> scoring_id
    exp: dict[str, str] = field(default_factory=dict)  # name -> explanation_id
    tenant_key_id: str = ""
    space_id: str = ""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLite in the data dir, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield ""
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    with postgres_schema(base) as url:
        yield url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("find")
    settings = Settings(
        data_dir=tmp / "data", database_url=database_url, workers=2, max_jobs_per_space=MAX_JOBS
    )
    with running(settings) as svc:
        db = Database(settings.resolved_database_url())
        from limner.store import create_key

        tenant = create_key(db, "find", name="Tess tenant")
        viewer = create_key(db, "find", role="viewer", name="Vic viewer")
        other = create_key(db, "elsewhere")
        with db.session() as s:
            tenant_key_id = s.query(ApiKey.id).filter(ApiKey.key_hash == hash_key(tenant)).one()[0]
            space_id = s.query(Space.id).filter(Space.name == "find").one()[0]
        db.close()
        model = tiny_onnx(tmp / "tiny.onnx")

        def client(key: str) -> httpx.Client:
            headers = {"Authorization": f"Bearer {key}"}
            return httpx.Client(base_url=svc.url, headers=headers, timeout=60)

        http = client(tenant)
        with svc.client(tenant) as api:
            dep = api.deployments.create(name="tiny", file=model, metadata=TINY_META)
            dep2 = api.deployments.create(name="tiny2", file=model, metadata=TINY_META)
            sub = api.subscriptions.create(deployment_id=dep.id)
            sub.enable_explainability(**FAST)
            sub2 = api.subscriptions.create(deployment_id=dep2.id)
            # files by path: the client sends each file's name as its source
            paths = []
            for name, level in (("dark-a.png", 40), ("bright-b.png", 215)):
                (tmp / name).write_bytes(_png(level))
                paths.append(tmp / name)
            a, b = api.score_many(dep, paths, external_ids=["case-a", "case-b"])
        w = World(
            svc,
            http,
            client(viewer),
            client(other),
            dep.data,
            sub.data,
            dep2.data,
            sub2.data,
            tenant_key_id=tenant_key_id,
            space_id=space_id,
        )
        w.tx["a"], w.tx["b"] = str(a.scoring_id), str(b.scoring_id)
        # JSON: an object with its case id and file name, and a bare base64 string
        body = {
            "images": [
                {"image": _b64(_png(200)), "external_id": "case-c", "source": "scan-c.png"},
                _b64(_png(60)),
            ]
        }
        answer = http.post(f"/v1/deployments/{dep.id}/predictions", json=body)
        assert answer.status_code == 200, answer.text
        w.tx["c"], w.tx["d"] = (p["scoring_id"] for p in answer.json()["predictions"])
        # pixels: no file name, no case id
        pixels = np.full((16, 16, 3), 230, np.uint8).tolist()
        answer = http.post(
            f"/v1/deployments/{dep.id}/predictions", json={"input_data": [{"values": pixels}]}
        )
        w.tx["e"] = answer.json()["predictions"][0]["scoring_id"]
        answer = http.post(
            f"/v1/deployments/{dep2.id}/predictions",
            files=[("file", ("f.png", _png(180), "image/png"))],
            data={"external_id": "case-a"},  # the same case id, another subscription: fine
        )
        assert answer.status_code == 200, answer.text
        w.tx["f"] = answer.json()["predictions"][0]["scoring_id"]
        for name, label in (("a", "dark"), ("b", "dark"), ("c", "bright")):
            resp = http.put(f"/v1/transactions/{w.tx[name]}/feedback", json={"label": label})
            assert resp.status_code == 200, resp.text
        # explanations: kernelshap of a; occlusion of b's class "dark"; 2 regions of c
        # (a warning: fewer than 4 regions), asked by the viewer
        jobs = {
            "a": (http, {"scoring_id": w.tx["a"]}),
            "b": (http, {"scoring_id": w.tx["b"], "method": "occlusion", "classes": ["dark"]}),
            "c": (w.viewer, {"scoring_id": w.tx["c"], "segments": 2}),
        }
        for name, (caller, request) in jobs.items():
            resp = caller.post("/v1/explanations", json=request)
            assert resp.status_code == 202, resp.text
            w.exp[name] = resp.json()["explanation_id"]
        with svc.client(tenant) as api:
            for exp_id in w.exp.values():
                api.explanations.get(exp_id).wait(timeout=120)
        yield w
        for c in (w.http, w.viewer, w.other):
            c.close()


def _tx(w: World, path: str = "/v1/transactions", **params: Any) -> dict[str, Any]:
    resp = w.http.get(path, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _sids(page: dict[str, Any]) -> set[str]:
    return {t["scoring_id"] for t in page["transactions"]}


def _names(w: World, sids: set[str]) -> set[str]:
    by_sid = {v: k for k, v in w.tx.items()}
    return {by_sid[s] for s in sids}


def _exp(w: World, client: httpx.Client | None = None, **params: Any) -> set[str]:
    resp = (client or w.http).get("/v1/explanations", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == len(body["explanations"]) or body["limit"] < body["total"]
    by_id = {v: k for k, v in w.exp.items()}
    return {by_id.get(e["explanation_id"], e["explanation_id"]) for e in body["explanations"]}


# --- scoring with case ids and file names ----------------------------------------------------


def test_transactions_carry_case_id_source_feedback_and_deployment(world: World) -> None:
    w = world
    rows = {t["scoring_id"]: t for t in _tx(w)["transactions"]}
    a, b, c, d, e, f = (rows[w.tx[n]] for n in "abcdef")
    assert (a["external_id"], a["source"], a["feedback"]) == ("case-a", "dark-a.png", "dark")
    assert (b["source"], b["label"], b["feedback"], b["misclassified"]) == (
        "bright-b.png",
        "bright",
        "dark",
        True,
    )
    assert (c["external_id"], c["source"], c["misclassified"]) == ("case-c", "scan-c.png", False)
    assert d["external_id"] is None and d["source"] is None and d["misclassified"] is None
    assert e["source"] is None and e["label"] == "bright"
    assert (f["external_id"], f["source"], f["deployment_id"]) == ("case-a", "f.png", w.dep2["id"])
    assert a["deployment_id"] == w.dep["id"]
    assert [a["explained"], b["explained"], c["explained"], d["explained"]] == [
        True,
        True,
        True,
        False,
    ]
    one = w.http.get(f"/v1/transactions/{w.tx['a']}").json()
    assert one["external_id"] == "case-a" and one["explained"] is True


def test_a_duplicate_case_id_is_409_naming_it_and_logs_nothing(world: World) -> None:
    w = world
    before = _tx(w)["total"]
    url = f"/v1/deployments/{w.dep['id']}/predictions"
    again = w.http.post(
        url, files=[("file", ("x.png", _png(90), "image/png"))], data={"external_id": "case-b"}
    )
    assert again.status_code == 409 and "case-b" in again.json()["error"]["message"]
    twice = w.http.post(
        url,
        json={"images": [{"image": _b64(_png(1)), "external_id": "dup"}] * 2},
    )
    assert twice.status_code == 409 and "dup" in twice.json()["error"]["message"]
    assert _tx(w)["total"] == before


def test_case_ids_and_sources_must_fit(world: World) -> None:
    url = f"/v1/deployments/{world.dep['id']}/predictions"
    files = [("file", ("x.png", _png(90), "image/png"))] * 2
    cases = [
        {"files": files, "data": {"external_id": "only-one"}},  # one per file part
        {"json": {"images": [{"image": _b64(_png(9)), "external_id": "x" * 201}]}},
        {"json": {"images": [{"image": _b64(_png(9)), "colour": "red"}]}},
        {"json": {"images": [{"image": _b64(_png(9)), "external_id": 7}]}},
    ]
    for kwargs in cases:
        resp = world.http.post(url, **kwargs)
        assert resp.status_code == 422, (kwargs.keys(), resp.text)


def test_payload_records_take_case_id_source_and_feedback(world: World) -> None:
    w = world
    sub = w.http.post(
        "/v1/subscriptions",
        json={
            "name": "ext",
            "scoring_url": "https://93.184.215.14/v2/models/x",
            "labels": ["cat", "dog"],
        },
    )
    assert sub.status_code == 201, sub.text
    sub_id = sub.json()["id"]
    url = f"/v1/subscriptions/{sub_id}/payload-records"
    record = {
        "scoring_id": "rec-1",
        "image": _b64(_png(100)),
        "probabilities": [0.3, 0.7],
        "external_id": "claim-9",
        "source": "claim-9.jpg",
        "feedback": "cat",
    }
    assert w.http.post(url, json={"records": [record]}).json()["records"][0]["created"] is True
    # sent again: acknowledged, not a conflict with itself
    assert w.http.post(url, json={"records": [record]}).json()["records"][0]["created"] is False
    clash = w.http.post(url, json={"records": [{**record, "scoring_id": "rec-2"}]})
    assert clash.status_code == 409 and "claim-9" in clash.text
    bad = w.http.post(url, json={"records": [{**record, "scoring_id": "r3", "feedback": "cow"}]})
    assert bad.status_code == 422 and "cow" in bad.text
    page = _tx(w, f"/v1/subscriptions/{sub_id}/transactions")
    assert page["total"] == 1
    t = page["transactions"][0]
    assert (t["external_id"], t["source"], t["feedback"], t["label"], t["misclassified"]) == (
        "claim-9",
        "claim-9.jpg",
        "cat",
        "dog",
        True,
    )
    assert t["deployment_id"] is None
    w.http.delete(f"/v1/subscriptions/{sub_id}")


# --- feedback ---------------------------------------------------------------------------------


def test_feedback_is_set_cleared_checked_audited_and_refused_to_viewers(world: World) -> None:
    w = world
    url = f"/v1/transactions/{w.tx['d']}/feedback"
    assert w.http.put(url, json={"label": "bright"}).json()["misclassified"] is True
    cleared = w.http.put(url, json={"label": None}).json()
    assert cleared["feedback"] is None and cleared["misclassified"] is None
    wrong = w.http.put(url, json={"label": "purple"})
    assert wrong.status_code == 422 and "purple" in wrong.json()["error"]["message"]
    assert w.http.put(url, json={}).status_code == 422
    assert w.http.put(url, json={"label": "dark", "extra": 1}).status_code == 422
    viewer = w.viewer.put(url, json={"label": "dark"})
    assert viewer.status_code == 403
    assert w.other.put(url, json={"label": "dark"}).status_code == 404
    assert w.http.get(f"/v1/transactions/{w.tx['d']}").json()["feedback"] is None
    db = Database(w.svc.settings.resolved_database_url())
    try:
        rows, _ = query(db, w.space_id, AuditQuery(action="transaction.feedback"))
    finally:
        db.close()
    outcomes = [(r.target, r.outcome, r.role) for r in rows if r.target == w.tx["d"]]
    assert ("ok", "tenant") in {(o, role) for _, o, role in outcomes}
    assert ("denied", "viewer") in {(o, role) for _, o, role in outcomes}
    assert any(r.detail.get("label") == "bright" for r in rows)


# --- transaction filters ----------------------------------------------------------------------


def test_every_transaction_filter(world: World) -> None:
    w = world
    sub_path = f"/v1/subscriptions/{w.sub['id']}/transactions"
    everything = _tx(w)
    assert everything["total"] == 6 and _names(w, _sids(everything)) == set("abcdef")
    created = {t["scoring_id"]: t["created_at"] for t in everything["transactions"]}
    # newest first
    times = [t["created_at"] for t in everything["transactions"]]
    assert times == sorted(times, reverse=True)
    checks = {
        "label=dark": ({"label": "dark"}, {"a", "d"}),
        "label=bright": ({"label": "bright"}, {"b", "c", "e", "f"}),
        "true_label": ({"true_label": "dark"}, {"a", "b"}),
        "misclassified": ({"misclassified": "true"}, {"b"}),
        "not misclassified": ({"misclassified": "false"}, {"a", "c"}),
        "deployment": ({"deployment_id": w.dep2["id"]}, {"f"}),
        "subscription": ({"subscription_id": w.sub["id"]}, set("abcde")),
        "explained": ({"explained": "true"}, {"a", "b", "c"}),
        "not explained": ({"explained": "false"}, {"d", "e", "f"}),
        "external_id": ({"external_id": "case-a"}, {"a", "f"}),
        "since": ({"since": created[w.tx["c"]]}, {"c", "d", "e", "f"}),
        "until": ({"until": created[w.tx["c"]]}, {"a", "b"}),
        "both": ({"label": "bright", "explained": "false"}, {"e", "f"}),
    }
    for what, (params, expected) in checks.items():
        page = _tx(w, **params)
        assert _names(w, _sids(page)) == expected, what
        assert page["total"] == len(expected), what
        if "subscription_id" not in params:
            on_sub = _tx(w, sub_path, **params)
            assert _names(w, _sids(on_sub)) == expected - {"f"}, what
    # an offset-aware time is compared in UTC
    at_c = datetime.fromisoformat(created[w.tx["c"]].replace("Z", "+00:00"))
    shifted = at_c.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert _names(w, _sids(_tx(w, since=shifted))) == {"c", "d", "e", "f"}
    # pagination keeps the total
    page = _tx(w, label="bright", limit=2, offset=1)
    assert page["total"] == 4 and len(page["transactions"]) == 2


def test_transaction_filters_refuse_unknown_names_and_bad_values(world: World) -> None:
    w = world
    sub_path = f"/v1/subscriptions/{w.sub['id']}/transactions"
    bad = [
        ("/v1/transactions", {"colour": "red"}, "colour"),
        ("/v1/transactions", {"labels": "dark"}, "labels"),
        (sub_path, {"subscription_id": w.sub["id"]}, "subscription_id"),  # not on this route
        ("/v1/transactions", {"misclassified": "maybe"}, "misclassified"),
        ("/v1/transactions", {"explained": "sometimes"}, "explained"),
        ("/v1/transactions", {"since": "yesterday"}, "since"),
        ("/v1/transactions", {"until": "2024-13-01"}, "until"),
        ("/v1/transactions", {"since": "2025-02-01", "until": "2025-01-01"}, "since"),
        ("/v1/transactions", {"label": "purple"}, "label"),
        (sub_path, {"true_label": "purple"}, "true_label"),
        ("/v1/transactions", {"external_id": "x" * 201}, "external_id"),
        ("/v1/transactions", {"external_id": ""}, "external_id"),  # empty: not "any"
        ("/v1/transactions", {"limit": "0"}, "limit"),
        ("/v1/transactions", {"offset": "-1"}, "offset"),
    ]
    for path, params, name in bad:
        resp = w.http.get(path, params=params)
        assert resp.status_code == 422, (path, params, resp.text)
        assert name in resp.json()["error"]["message"], (params, resp.text)
    twice = w.http.get("/v1/transactions?label=dark&label=bright")
    assert twice.status_code == 422 and "label" in twice.text


def test_transaction_lists_stay_in_their_space(world: World) -> None:
    w = world
    assert w.other.get("/v1/transactions").json()["total"] == 0
    assert (
        w.other.get("/v1/transactions", params={"subscription_id": w.sub["id"]}).json()["total"]
        == 0
    )
    assert w.other.get(f"/v1/subscriptions/{w.sub['id']}/transactions").status_code == 404
    assert w.other.get("/v1/transactions", params={"external_id": "case-a"}).json()["total"] == 0
    assert w.http.get("/v1/transactions", params={"subscription_id": "nope"}).json()["total"] == 0


# --- explanation filters ----------------------------------------------------------------------


def _results(w: World) -> dict[str, dict[str, Any]]:
    return {n: w.http.get(f"/v1/explanations/{i}").json()["result"] for n, i in w.exp.items()}


def test_every_explanation_filter(world: World) -> None:
    w = world
    results = _results(w)
    everything = w.http.get("/v1/explanations").json()
    assert everything["total"] == 3 and {e["status"] for e in everything["explanations"]} == {
        "finished"
    }
    first = {e["explanation_id"]: e for e in everything["explanations"]}[w.exp["a"]]
    assert first["deployment_id"] == w.dep["id"] and first["requested_by"] == "Tess tenant"
    created = {e["explanation_id"]: e["created_at"] for e in everything["explanations"]}

    def settled(r: dict[str, Any]) -> bool | None:  # None: a deterministic method
        flags = [i["settled"] for i in r["explanations"]]
        return None if None in flags else all(flags)

    def min_r2(r: dict[str, Any]) -> float:
        return min(i["fit_r2"] for i in r["explanations"])

    warned = {n for n, r in results.items() if any(i["warnings"] for i in r["explanations"])}
    assert "c" in warned  # two regions: "fewer than 4 regions"
    r2 = sorted(min_r2(r) for r in results.values())
    checks = {
        "scoring_id": ({"scoring_id": w.tx["b"]}, {"b"}),
        "status finished": ({"status": "finished"}, {"a", "b", "c"}),
        "status failed": ({"status": "failed"}, set()),
        "status queued": ({"status": "queued"}, set()),
        "method": ({"method": "occlusion"}, {"b"}),
        "method default": ({"method": "kernelshap"}, {"a", "c"}),
        "class by label": (
            {"class": "bright"},
            {
                n
                for n, r in results.items()
                if any(i["label"] == "bright" for i in r["explanations"])
            },
        ),
        "class by index": (
            {"class": "0"},
            {
                n
                for n, r in results.items()
                if any(i["class_index"] == 0 for i in r["explanations"])
            },
        ),
        "deployment": ({"deployment_id": w.dep["id"]}, {"a", "b", "c"}),
        "other deployment": ({"deployment_id": w.dep2["id"]}, set()),
        "requested_by name": ({"requested_by": "Vic viewer"}, {"c"}),
        "requested_by key id": ({"requested_by": w.tenant_key_id}, {"a", "b"}),
        "settled": ({"settled": "true"}, {n for n, r in results.items() if settled(r) is True}),
        "not settled": (
            {"settled": "false"},
            {n for n, r in results.items() if settled(r) is False},
        ),
        "warnings": ({"warnings": "true"}, warned),
        "no warnings": ({"warnings": "false"}, {"a", "b", "c"} - warned),
        "r2 below the lowest": ({"max_r2": r2[0]}, set()),
        "r2 below above all": ({"max_r2": r2[-1] + 0.01}, {"a", "b", "c"}),
        "since": ({"since": created[w.exp["b"]]}, {"b", "c"}),
        "until": ({"until": created[w.exp["b"]]}, {"a"}),
    }
    for what, (params, expected) in checks.items():
        assert _exp(w, **params) == expected, what
    assert {"b"} == _exp(w, **{"class": "dark", "method": "occlusion"})
    # a class the RESULT does not explain: b explains "dark" only
    assert "b" not in _exp(w, **{"class": "bright"})
    page = w.http.get("/v1/explanations", params={"status": "finished", "limit": 1, "offset": 1})
    assert page.json()["total"] == 3 and len(page.json()["explanations"]) == 1
    page = w.http.get("/v1/explanations", params={"max_r2": r2[-1] + 1, "limit": 2, "offset": 2})
    assert page.json()["total"] == 3 and len(page.json()["explanations"]) == 1


def test_explanation_filters_refuse_unknown_names_and_bad_values(world: World) -> None:
    w = world
    bad = [
        ({"stat": "failed"}, "stat"),
        ({"status": "done"}, "status"),
        ({"requested_by": ""}, "requested_by"),
        ({"method": "magic"}, "method"),
        ({"class": "zebra"}, "class"),
        ({"settled": "perhaps"}, "settled"),
        ({"warnings": "lots"}, "warnings"),
        ({"max_r2": "high"}, "max_r2"),
        ({"max_r2": "nan"}, "max_r2"),
        ({"since": "soon"}, "since"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "since"),
        ({"limit": "1001"}, "limit"),
    ]
    for path in ("/v1/explanations", "/v1/explanations/export.jsonl"):
        for params, name in bad:
            if path.endswith("jsonl") and params.get("limit"):
                continue
            resp = w.http.get(path, params=params)
            assert resp.status_code == 422, (path, params, resp.text)
            assert name in resp.json()["error"]["message"], (path, params, resp.text)


def test_explanation_lists_stay_in_their_space(world: World) -> None:
    w = world
    for params in ({}, {"scoring_id": w.tx["a"]}, {"deployment_id": w.dep["id"]}):
        body = w.other.get("/v1/explanations", params=params).json()
        assert body["explanations"] == [] and body["total"] == 0
    assert w.other.get(f"/v1/explanations/{w.exp['a']}").status_code == 404
    assert w.other.get("/v1/explanations/export.jsonl").text == ""


# --- export -----------------------------------------------------------------------------------


def test_export_streams_the_selection_marks_it_exported_and_is_audited(
    world: World, tmp_path: Path
) -> None:
    w = world
    assert all(
        w.http.get(f"/v1/explanations/{i}").json()["exported_at"] is None for i in w.exp.values()
    )
    resp = w.viewer.get("/v1/explanations/export.jsonl", params={"method": "kernelshap"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert {e["explanation_id"] for e in lines} == {w.exp["a"], w.exp["c"]}
    assert all(e["result"]["explanations"] and e["exported_at"] for e in lines)
    assert w.http.get(f"/v1/explanations/{w.exp['a']}").json()["exported_at"] is not None
    assert w.http.get(f"/v1/explanations/{w.exp['b']}").json()["exported_at"] is None
    # the client writes the same lines to a file
    with w.svc.client(w.http.headers["Authorization"].split()[-1]) as api:
        n = api.explanations.export_jsonl(tmp_path / "out.jsonl", scoring_id=w.tx["b"])
    assert n == 1
    assert json.loads((tmp_path / "out.jsonl").read_text())["explanation_id"] == w.exp["b"]
    db = Database(w.svc.settings.resolved_database_url())
    try:
        rows, _ = query(db, w.space_id, AuditQuery(action="explanation.export"))
    finally:
        db.close()
    counts = {(r.role, r.detail.get("count"), r.outcome) for r in rows}
    assert ("tenant", 1, "ok") in counts and ("viewer", 2, "ok") in counts


def test_an_exported_explanation_outlives_its_deployments_deletion(world: World) -> None:
    w = world  # a of tiny was exported above: deleting tiny retires it
    resp = w.http.delete(f"/v1/deployments/{w.dep['id']}")
    assert resp.status_code == 204, resp.text
    assert w.http.get(f"/v1/explanations/{w.exp['a']}").json()["status"] == "finished"
    assert _names(w, _sids(_tx(w, subscription_id=w.sub["id"]))) == set("abcde")


# --- many at once -----------------------------------------------------------------------------


def test_batch_explains_a_selection_up_to_the_job_limit(world: World) -> None:
    w = world
    # a live deployment with explanations on and six unexplained transactions
    sub2 = w.http.put(
        f"/v1/subscriptions/{w.sub2['id']}/explainability", json={"enabled": True, **FAST}
    )
    assert sub2.status_code == 200, sub2.text
    url = f"/v1/deployments/{w.dep2['id']}/predictions"
    images = [{"image": _b64(_png(20 + 30 * i)), "source": f"batch-{i}.png"} for i in range(5)]
    assert w.http.post(url, json={"images": images}).status_code == 200
    selection = {"subscription_id": w.sub2["id"], "explained": False}
    assert _tx(w, **selection)["total"] == 6
    resp = w.viewer.post("/v1/explanations/batch", json={"filter": selection})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["matched"] == 6 and len(body["queued"]) == MAX_JOBS
    assert body["not_queued"] == 6 - MAX_JOBS
    assert [r["code"] for r in body["reasons"]] == ["too_many_requests"]
    assert "LIMNER_MAX_JOBS_PER_SPACE" in body["reasons"][0]["message"]
    queued = {q["explanation_id"] for q in body["queued"]}
    assert queued == {
        e["explanation_id"]
        for e in w.http.get("/v1/explanations", params={"requested_by": "Vic viewer"}).json()[
            "explanations"
        ]
        if e["explanation_id"] != w.exp["c"]
    }
    with w.svc.client(w.http.headers["Authorization"].split()[-1]) as api:
        for exp_id in queued:
            api.explanations.get(exp_id).wait(timeout=120)
        # the rest, with settings of their own, and the cap on one request
        rest = api.explanations.explain_many(settings={"method": "occlusion"}, limit=1, **selection)
    assert rest["matched"] == 6 - MAX_JOBS and len(rest["queued"]) == 1
    assert [(r["code"], r["count"]) for r in rest["reasons"]] == [("limit", 6 - MAX_JOBS - 1)]
    job = w.http.get(f"/v1/explanations/{rest['queued'][0]['explanation_id']}").json()
    assert job["settings"]["method"] == "occlusion"
    db = Database(w.svc.settings.resolved_database_url())
    try:
        rows, _ = query(db, w.space_id, AuditQuery(action="explanation.request_many"))
    finally:
        db.close()
    mine = [r for r in rows if r.role == "viewer"]
    assert mine and mine[0].detail["queued"] == MAX_JOBS
    assert sorted(mine[0].detail["explanation_ids"]) == sorted(queued)


def test_batch_reports_what_it_could_not_queue_and_refuses_bad_requests(world: World) -> None:
    w = world
    # tiny was deleted (retired): its transactions cannot be explained any more
    resp = w.http.post(
        "/v1/explanations/batch", json={"filter": {"subscription_id": w.sub["id"]}, "limit": 2}
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["queued"] == [] and body["not_queued"] == 5
    assert {r["code"] for r in body["reasons"]} == {"conflict", "limit"}
    for bad in (
        {"filter": {"colour": "red"}},
        {"filter": {"label": "purple"}},
        {"filter": {"misclassified": "maybe"}},
        {"limit": 501},
        {"settings": {"samples": 10**6}},
        {"settings": {"method": "magic"}},
        {"filters": {}},
    ):
        resp = w.http.post("/v1/explanations/batch", json=bad)
        assert resp.status_code == 422, (bad, resp.text)
    elsewhere = w.other.post(
        "/v1/explanations/batch", json={"filter": {"subscription_id": w.sub2["id"]}}
    )
    assert elsewhere.status_code == 202 and elsewhere.json()["matched"] == 0
