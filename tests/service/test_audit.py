"""The audit trail: a record for every state-changing request (refusals too), its filters, its
space boundary, retiring instead of deleting reviewed history, and the hash chain checked by
``limner audit verify`` on SQLite and PostgreSQL, also under 8 concurrent clients."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import text
from svc_helpers import running

from limner.imaging import encode_png
from limner.service.audit import AUDITED
from limner.settings import Settings
from limner.store import (
    Annotation,
    AuditEntry,
    AuditLog,
    Database,
    Explanation,
    create_key,
    create_key_info,
    new_id,
)
from limner.store.audit import AuditQuery
from limner.store.audit import query as audit_query
from limner.store.audit import verify as audit_verify
from limner.store.keys import ensure_space
from limner.store.tables import utcnow

_SECURITY = Path(__file__).resolve().parents[1] / "security"
if str(_SECURITY) not in sys.path:
    sys.path.append(str(_SECURITY))
from sec_helpers import TINY_META, tiny_onnx  # noqa: E402

#: Explanations that finish in well under a second with the tiny model.
FAST = {"enabled": True, "samples": 16, "segmentation": "grid", "segments": 4, "baseline": "gray"}
ANNOTATE = ("POST", "/v1/explanations/{explanation_id}/annotations")
#: The environment of the CLI: no LIMNER_* settings, this checkout's limner.
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def png(value: int) -> bytes:
    """An 8x8 gray PNG."""
    return encode_png(np.full((8, 8, 3), value, np.uint8))


def limner(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``limner ARGS`` against the data dir and database of ``settings``."""
    where = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        where += ["--database-url", settings.database_url]
    return subprocess.run(
        [sys.executable, "-m", "limner.cli.main", *args, *where],
        capture_output=True,
        text=True,
        timeout=120,
        env={**ENV, "LIMNER_DATABASE_URL": ""},
    )


def http_of(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def deploy_tiny(http: httpx.Client, name: str, model: bytes) -> httpx.Response:
    """Upload the tiny model as ``name`` (retried while every model-load slot is taken; each
    try is a request of its own)."""
    while True:
        resp = http.post(
            "/v1/deployments",
            data={"name": name, "metadata": json.dumps(TINY_META)},
            files={"file": ("model.onnx", model, "application/octet-stream")},
        )
        if resp.status_code != 503:
            return resp
        time.sleep(float(resp.headers.get("retry-after", "1")))


def wait_finished(http: httpx.Client, explanation_id: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = http.get(f"/v1/explanations/{explanation_id}").json()["status"]
        if status in ("finished", "failed"):
            assert status == "finished"
            return
        time.sleep(0.1)
    raise AssertionError("the explanation did not finish")


@dataclass
class Reviewed:
    """A subscribed deployment with one transaction and its finished explanation."""

    deployment_id: str
    subscription_id: str
    scoring_id: str
    explanation_id: str


def reviewed(http: httpx.Client, name: str, model: bytes) -> Reviewed:
    dep = deploy_tiny(http, name, model)
    assert dep.status_code == 201, dep.text
    sub = http.post("/v1/subscriptions", json={"deployment_id": dep.json()["id"]})
    assert sub.status_code == 201, sub.text
    put = http.put(f"/v1/subscriptions/{sub.json()['id']}/explainability", json=FAST)
    assert put.status_code == 200, put.text
    scored = http.post(
        f"/v1/deployments/{dep.json()['id']}/predictions",
        files={"file": ("x.png", png(200), "image/png")},
    )
    assert scored.status_code == 200, scored.text
    sid = scored.json()["predictions"][0]["scoring_id"]
    exp = http.post("/v1/explanations", json={"scoring_id": sid})
    assert exp.status_code == 202, exp.text
    wait_finished(http, exp.json()["explanation_id"])
    return Reviewed(dep.json()["id"], sub.json()["id"], sid, exp.json()["explanation_id"])


@dataclass
class Desk:
    """A service on SQLite; space ``default`` with an admin's, a tenant's (``tina``) and a
    viewer's (``vera``) key; another space's key; the tenant's reviewed deployment."""

    url: str
    settings: Settings
    admin: str
    tenant: str
    tenant_id: str
    viewer: str
    viewer_id: str
    other: str
    model: bytes
    tiny: Reviewed

    def http(self, key: str | None = None) -> httpx.Client:
        return http_of(self.url, key or self.admin)

    def records(self, as_key: str | None = None, **params: Any) -> dict[str, Any]:
        """``GET /v1/audit`` with ``params``, as ``as_key`` (the admin's by default)."""
        with self.http(as_key) as h:
            resp = h.get("/v1/audit", params={"limit": 1000, **params})
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def db(self) -> Database:
        return Database(self.settings.resolved_database_url())


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    data_dir = tmp_path_factory.mktemp("audit-desk")
    model = tiny_onnx(data_dir.parent / "tiny.onnx").read_bytes()
    settings = Settings(data_dir=data_dir, database_url="", workers=2)
    with running(settings) as r:
        db = Database(settings.resolved_database_url())
        tenant, tina = create_key_info(db, "default", role="tenant", name="tina")
        viewer, vera = create_key_info(db, "default", role="viewer", name="vera")
        other = create_key(db, "elsewhere", name="otto")
        db.close()
        with http_of(r.url, tenant) as h:
            tiny = reviewed(h, "tiny", model)
        yield Desk(r.url, settings, r.key, tenant, tina.id, viewer, vera.id, other, model, tiny)


def newest(records: dict[str, Any], **match: Any) -> dict[str, Any]:
    """The newest record whose fields equal ``match``."""
    found = [r for r in records["records"] if all(r[k] == v for k, v in match.items())]
    assert found, f"no record with {match}"
    return found[0]


def test_each_state_change_is_recorded_with_who_when_and_what(desk: Desk) -> None:
    records = desk.records()
    who = {"key_id": desk.tenant_id, "key_name": "tina", "role": "tenant", "client": "127.0.0.1"}
    created = newest(records, action="deployment.create", target=desk.tiny.deployment_id)
    assert {k: created[k] for k in who} == who and created["outcome"] == "ok"
    assert created["detail"]["name"] == "tiny" and created["detail"]["status"] == 201
    assert re.fullmatch(r"[0-9a-f]{64}", created["detail"]["artifact_sha256"])
    assert datetime.fromisoformat(created["at"]).tzinfo is not None
    subscribed = newest(records, action="subscription.create", target=desk.tiny.subscription_id)
    assert subscribed["detail"]["deployment_id"] == desk.tiny.deployment_id
    settings = newest(records, action="subscription.settings", target=desk.tiny.subscription_id)
    assert settings["detail"]["settings"]["samples"] == FAST["samples"]
    asked = newest(records, action="explanation.request", target=desk.tiny.explanation_id)
    assert asked["detail"]["scoring_id"] == desk.tiny.scoring_id and asked["key_name"] == "tina"

    with desk.http(desk.tenant) as h:  # a deployment without reviewed history goes entirely
        gone = deploy_tiny(h, "gone", desk.model).json()["id"]
        sub = h.post("/v1/subscriptions", json={"deployment_id": gone}).json()["id"]
        assert h.delete(f"/v1/subscriptions/{sub}").status_code == 204
        assert h.delete(f"/v1/deployments/{gone}").status_code == 204
        link = h.post("/ui/login-links", json={})
        assert link.status_code == 201
    browser = httpx.Client(base_url=desk.url, timeout=60)
    page = browser.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    assert browser.post("/ui/login", data={"key": desk.tenant, "csrf": csrf[1]}).status_code == 303

    records = desk.records()
    assert newest(records, action="subscription.delete", target=sub)["outcome"] == "ok"
    assert newest(records, action="deployment.delete", target=gone)["key_name"] == "tina"
    assert newest(records, action="login_link.create")["key_id"] == desk.tenant_id
    login = newest(records, action="login", target=desk.tenant_id)
    assert (login["outcome"], login["client"]) == ("ok", "127.0.0.1")
    ns = [r["n"] for r in records["records"]]
    assert ns == sorted(ns, reverse=True) and len(set(ns)) == len(ns)
    with desk.http() as h:
        verdict = h.get("/v1/audit/verify").json()
    assert verdict == {"ok": True, "checked": records["total"], "broken": None, "reason": ""}


def test_refusals_and_failures_are_recorded_but_unknown_keys_are_not(desk: Desk) -> None:
    sub = desk.tiny.subscription_id
    with desk.http(desk.viewer) as h:
        assert h.put(f"/v1/subscriptions/{sub}/explainability", json=FAST).status_code == 403
    denied = newest(desk.records(), action="subscription.settings", target=sub)
    assert (denied["outcome"], denied["role"], denied["key_id"]) == (
        "denied",
        "viewer",
        desk.viewer_id,
    )
    assert denied["detail"]["status"] == 403
    with desk.http(desk.tenant) as h:
        missing = h.put("/v1/subscriptions/0123456789abcdef/explainability", json=FAST)
        assert missing.status_code == 404
    failed = newest(desk.records(), target="0123456789abcdef")
    assert (failed["outcome"], failed["detail"]["status"]) == ("failed", 404)
    total = desk.records()["total"]
    with desk.http("lmn_not_a_key") as h:
        assert h.put(f"/v1/subscriptions/{sub}/explainability", json=FAST).status_code == 401
    assert desk.records()["total"] == total


def test_keys_created_and_revoked_with_the_cli_are_recorded(desk: Desk) -> None:
    made = limner(desk.settings, "keys", "create", "--space", "default", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    revoked = limner(desk.settings, "keys", "revoke", token)
    assert revoked.returncode == 0, revoked.stderr
    key_id = re.search(r"id ([0-9a-f]{32})", revoked.stdout)
    assert key_id is not None
    records = desk.records()
    create = newest(records, action="key.create", target=key_id[1])
    revoke = newest(records, action="key.revoke", target=key_id[1])
    assert revoke["n"] > create["n"]
    for r in (create, revoke):
        assert (r["role"], r["client"], r["key_id"], r["outcome"]) == (
            "operator",
            "cli",
            None,
            "ok",
        )
        assert r["detail"]["key_role"] == "viewer"
    # the server appends after the CLI did, in place, and the chain holds
    with desk.http(desk.tenant) as h:
        assert h.post("/ui/login-links", json={}).status_code == 201
        verdict = h.get("/v1/audit/verify").json()
    assert verdict["ok"] and verdict["checked"] == desk.records()["total"]


def test_each_filter_narrows_the_records(desk: Desk) -> None:
    everything = desk.records()
    records, total = everything["records"], everything["total"]
    assert total == len(records) >= 6

    by_action = desk.records(action="subscription.settings")
    expected = [r for r in records if r["action"] == "subscription.settings"]
    assert by_action["records"] == expected and by_action["total"] == len(expected) > 0

    by_key = desk.records(key=desk.tenant_id)
    assert by_key["records"] == [r for r in records if r["key_id"] == desk.tenant_id]
    assert 0 < by_key["total"] < total

    by_target = desk.records(target=desk.tiny.subscription_id)
    assert by_target["records"] == [r for r in records if r["target"] == desk.tiny.subscription_id]
    assert {r["action"] for r in by_target["records"]} >= {"subscription.create"}

    middle = records[len(records) // 2]["at"]
    since, until = desk.records(since=middle), desk.records(until=middle)
    assert since["total"] + until["total"] == total
    assert since["records"] == [r for r in records if r["at"] >= middle]
    assert until["records"] == [r for r in records if r["at"] < middle]
    naive = middle.removesuffix("+00:00")  # a time without an offset is UTC
    assert desk.records(since=naive)["records"] == since["records"]

    page = desk.records(limit=2, offset=1)
    assert page["records"] == records[1:3] and page["total"] == total
    assert (page["limit"], page["offset"]) == (2, 1)
    both = desk.records(action="subscription.settings", key=desk.tenant_id, limit=1)
    assert both["records"] == [r for r in expected if r["key_id"] == desk.tenant_id][:1]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("acton=deployment.create", "acton"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("since=yesterday", "since"),
        ("until=2025-13-45T00:00:00", "until"),
        ("action=a&action=b", "action"),
    ],
)
def test_unknown_or_bad_parameters_are_422_naming_them(desk: Desk, query: str, name: str) -> None:
    with desk.http() as h:
        resp = h.get(f"/v1/audit?{query}")
    assert resp.status_code == 422, resp.text
    assert (
        resp.json()["error"]["code"] == "invalid_input" and name in resp.json()["error"]["message"]
    )


def test_verify_takes_no_parameters(desk: Desk) -> None:
    with desk.http() as h:
        resp = h.get("/v1/audit/verify", params={"space": "elsewhere"})
    assert resp.status_code == 422 and "space" in resp.json()["error"]["message"]


def test_another_space_sees_only_its_own_trail(desk: Desk) -> None:
    with desk.http(desk.other) as h:
        assert h.post("/ui/login-links", json={}).status_code == 201
        mine = h.get("/v1/audit", params={"limit": 1000}).json()
        assert mine["total"] == len(mine["records"]) >= 1
        assert {r["action"] for r in mine["records"]} == {"login_link.create"}
        assert len({r["space_id"] for r in mine["records"]}) == 1
        for params in (
            {"target": desk.tiny.deployment_id},
            {"key": desk.tenant_id},
            {"action": "deployment.create"},
        ):
            assert h.get("/v1/audit", params=params).json()["total"] == 0
        verdict = h.get("/v1/audit/verify").json()
    assert verdict["ok"] and verdict["checked"] == mine["total"]
    theirs = desk.records()
    assert all(r["space_id"] != mine["records"][0]["space_id"] for r in theirs["records"])
    viewer = desk.records(desk.viewer)  # every role of the space reads its trail
    assert viewer["total"] >= theirs["total"]


def test_deleting_reviewed_history_retires_and_only_an_admin_purges(desk: Desk) -> None:
    with desk.http(desk.tenant) as h:
        exported = reviewed(h, "exported", desk.model)
        annotated = reviewed(h, "annotated", desk.model)
    db = desk.db()
    try:
        with db.session() as s:
            row = s.get(Explanation, exported.explanation_id)
            assert row is not None
            row.exported_at = utcnow()
            s.add(
                Annotation(
                    id=new_id(),
                    space_id=row.space_id,
                    explanation_id=annotated.explanation_id,
                    key_id=desk.tenant_id,
                    key_name="tina",
                    role="tenant",
                    verdict="agree",
                    note="kept",
                )
            )
    finally:
        db.close()

    with desk.http(desk.tenant) as h:
        for item in (exported, annotated):
            assert h.delete(f"/v1/deployments/{item.deployment_id}").status_code == 204
            listed = [d["id"] for d in h.get("/v1/deployments").json()["deployments"]]
            assert item.deployment_id not in listed
            assert h.get(f"/v1/transactions/{item.scoring_id}").status_code == 200
            assert h.get(f"/v1/explanations/{item.explanation_id}").json()["status"] == "finished"
            scored = h.post(
                f"/v1/deployments/{item.deployment_id}/predictions",
                files={"file": ("x.png", png(10), "image/png")},
            )
            assert scored.status_code in (404, 409), scored.text
            retired = newest(desk.records(), target=item.deployment_id)
            assert (retired["action"], retired["outcome"]) == ("deployment.retire", "ok")
        # the name is free again
        assert deploy_tiny(h, "exported", desk.model).status_code == 201

        purge = h.delete(f"/v1/deployments/{exported.deployment_id}", params={"purge": "true"})
        assert purge.status_code == 403
        assert h.get(f"/v1/explanations/{exported.explanation_id}").status_code == 200
    refused = newest(desk.records(), target=exported.deployment_id)
    assert (refused["action"], refused["outcome"], refused["role"]) == (
        "deployment.delete",
        "denied",
        "tenant",
    )

    with desk.http() as h:
        purge = h.delete(f"/v1/deployments/{exported.deployment_id}", params={"purge": "true"})
        assert purge.status_code == 204
        assert h.get(f"/v1/explanations/{exported.explanation_id}").status_code == 404
        assert h.get(f"/v1/transactions/{exported.scoring_id}").status_code == 404
        assert h.get(f"/v1/explanations/{annotated.explanation_id}").status_code == 200
    purged = newest(desk.records(), target=exported.deployment_id)
    assert (purged["action"], purged["outcome"], purged["role"]) == (
        "deployment.purge",
        "ok",
        "admin",
    )


def recomputed_hash(record: dict[str, Any]) -> str:
    """A record's hash as docs/api.md tells an auditor to compute it (independently of
    limner's code): SHA-256 of the canonical JSON of every field but ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def test_cli_verify_holds_then_names_an_altered_record(
    backend_settings: Settings, tmp_path: Path
) -> None:
    with running(backend_settings) as r, http_of(r.url, r.key) as h:
        for _ in range(3):
            assert h.post("/ui/login-links", json={}).status_code == 201
        missing = h.put("/v1/subscriptions/nope/explainability", json=FAST)
        assert missing.status_code == 404
        total = h.get("/v1/audit").json()["total"]
        assert total == 4

        ok = limner(backend_settings, "audit", "verify", "--space", "default")
        assert ok.returncode == 0, ok.stderr
        assert "ok" in ok.stdout and "4 records" in ok.stdout

        out = tmp_path / "trail.jsonl"
        exported = limner(
            backend_settings, "audit", "export", "--space", "default", "--out", str(out)
        )
        assert exported.returncode == 0, exported.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [x["n"] for x in lines] == [1, 2, 3, 4]
        prev = "0" * 64
        for record in lines:
            assert record["prev_hash"] == prev and recomputed_hash(record) == record["hash"]
            prev = record["hash"]
        to_stdout = limner(backend_settings, "audit", "export", "--space", "default")
        assert [json.loads(x) for x in to_stdout.stdout.splitlines()] == lines

        db = Database(backend_settings.resolved_database_url())
        try:
            space_id = ensure_space(db, "default").id
            with db.trail.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE audit_records SET outcome = 'denied' WHERE n = 3 AND space_id = :s"
                    ),
                    {"s": space_id},
                )
        finally:
            db.close()

        broken = limner(backend_settings, "audit", "verify", "--space", "default")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert "record 3" in broken.stdout and "altered" in broken.stdout
        assert len(broken.stdout.strip().splitlines()) == 1
        verdict = h.get("/v1/audit/verify").json()
        assert (verdict["ok"], verdict["broken"], verdict["checked"]) == (False, 3, 2)

    unknown = limner(backend_settings, "audit", "verify", "--space", "nobody")
    assert unknown.returncode == 2 and "nobody" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_cli_needs_an_existing_database(tmp_path: Path) -> None:
    empty = Settings(data_dir=tmp_path / "nothing-here", database_url="")
    for command in ("verify", "export"):
        proc = limner(empty, "audit", command, "--space", "default")
        assert proc.returncode == 2 and "no limner database" in proc.stderr
        assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert not (tmp_path / "nothing-here").exists()


def _annotation_route(app: Any) -> bool:
    """Whether the app has the annotation route (built separately) and audits it."""
    routes = {(m, c.path) for c in iter_route_contexts(app.routes) for m in c.methods or ()}
    return ANNOTATE in routes and ANNOTATE in AUDITED


def test_eight_concurrent_clients_lose_no_record(
    backend_settings: Settings, tmp_path: Path
) -> None:
    settings = backend_settings.model_copy(update={"model_loads": 4, "max_jobs_per_space": 1000})
    model = tiny_onnx(tmp_path / "tiny.onnx").read_bytes()
    with running(settings) as r:
        annotate = _annotation_route(r.server.app)
        audited = [0] * 8
        errors: list[str] = []
        start = threading.Barrier(8)

        def client(i: int) -> None:
            def call(method: str, template: str, url: str, **kwargs: Any) -> httpx.Response:
                resp = h.request(method, url, **kwargs)
                if (method, template) in AUDITED:
                    audited[i] += 1
                return resp

            try:
                with http_of(r.url, r.key) as h:
                    start.wait()
                    while True:
                        dep = call(
                            "POST",
                            "/v1/deployments",
                            "/v1/deployments",
                            data={"name": f"c{i}", "metadata": json.dumps(TINY_META)},
                            files={"file": ("model.onnx", model, "application/octet-stream")},
                        )
                        if dep.status_code != 503:
                            break
                    assert dep.status_code == 201, dep.text
                    dep_id = dep.json()["id"]
                    sub = call(
                        "POST",
                        "/v1/subscriptions",
                        "/v1/subscriptions",
                        json={"deployment_id": dep_id},
                    ).json()["id"]
                    settings_path = "/v1/subscriptions/{subscription_id}/explainability"
                    for _ in range(2):
                        call(
                            "PUT",
                            settings_path,
                            settings_path.format(subscription_id=sub),
                            json=FAST,
                        )
                    for k in range(3):
                        scored = h.post(
                            f"/v1/deployments/{dep_id}/predictions",
                            files={"file": ("x.png", png(40 * k + i), "image/png")},
                        )
                        sid = scored.json()["predictions"][0]["scoring_id"]
                        exp = call(
                            "POST", "/v1/explanations", "/v1/explanations", json={"scoring_id": sid}
                        )
                        assert exp.status_code == 202, exp.text
                        if annotate:
                            noted = call(
                                *ANNOTATE,
                                ANNOTATE[1].format(explanation_id=exp.json()["explanation_id"]),
                                json={"verdict": "accepted", "note": f"client {i}"},
                            )
                            assert noted.status_code == 201, noted.text
                    call("POST", "/ui/login-links", "/ui/login-links", json={})
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(f"client {i}: {exc!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert not errors, errors
        # each: a deploy, a subscription, 2 settings, 3 explanations (and 3 annotations), a link
        assert sum(audited) >= 8 * (11 if annotate else 8)  # more: deploys tried again on 503

        ok = limner(settings, "audit", "verify", "--space", "default")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"({sum(audited)} records)" in ok.stdout
        with http_of(r.url, r.key) as h:
            records = h.get("/v1/audit", params={"limit": 1000}).json()
        assert records["total"] == sum(audited)
        assert sorted(x["n"] for x in records["records"]) == list(range(1, sum(audited) + 1))


def test_two_replicas_appending_at_once_keep_one_exact_chain(backend_settings: Settings) -> None:
    """Two logs on one database (as two replicas), 8 threads each: every append is stored once,
    numbered without gaps, and the chain holds; the records are read back as they were hashed
    (odd details included)."""
    db = Database(backend_settings.resolved_database_url())
    try:
        db.migrate()
        space_id = ensure_space(db, "busy").id
        logs = [AuditLog(db), AuditLog(Database(backend_settings.resolved_database_url()))]
        errors: list[BaseException] = []

        def appender(log: AuditLog, i: int) -> None:
            try:
                for k in range(25):
                    log.append(
                        space_id,
                        AuditEntry(
                            action="test.append",
                            outcome="ok",
                            target=f"t{i}-{k}",
                            client="c" * 100,  # longer than its column: stored cut
                            detail={"tuple": (i, k), "text": "é✓", "float": 0.1},
                        ),
                    )
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=appender, args=(logs[i % 2], i)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        verdict = audit_verify(db, space_id)
        assert verdict.ok and verdict.checked == 16 * 25, verdict
        rows, total = audit_query(db, space_id, AuditQuery(), limit=1000)
        assert total == 400 and sorted(r.n for r in rows) == list(range(1, 401))
        assert len({r.target for r in rows}) == 400
        assert rows[0].detail == {
            "float": 0.1,
            "text": "é✓",
            "tuple": [int(x) for x in rows[0].target[1:].split("-")],
        }
        if db.engine.dialect.name == "sqlite":  # stored as the ORM stores times
            with db.trail.engine.connect() as conn:
                raw = conn.execute(text("SELECT at FROM audit_records LIMIT 1")).scalar()
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", str(raw))
        logs[1].db.close()
    finally:
        db.close()


def test_sqlite_keeps_the_trail_in_a_file_of_its_own_and_moves_older_records_there(
    tmp_path: Path,
) -> None:
    """On SQLite the trail lives in ``limner-audit.db`` beside ``limner.db`` (its own write
    lock); records a database kept in its main file (as limner did before) move there intact
    the first time the trail opens, and the chain still verifies."""
    url = f"sqlite:///{tmp_path / 'limner.db'}"
    db = Database(url)
    try:
        db.migrate()
        space_id = ensure_space(db, "default").id
        AuditLog(db).append(space_id, AuditEntry(action="key.create", outcome="ok", target="k1"))
        AuditLog(db).append(space_id, AuditEntry(action="login", outcome="ok"))
        assert (tmp_path / "limner-audit.db").is_file()
        assert oct((tmp_path / "limner-audit.db").stat().st_mode & 0o777) == "0o600"
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_records")).scalar() == 0
        # the layout of older databases: the records in the main file, none in the trail's
        with db.trail.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(text("SELECT * FROM audit_records")).mappings()]
            conn.execute(text("DELETE FROM audit_records"))
        with db.engine.begin() as conn:
            for row in rows:
                names = [k for k in row if k != "seq"]
                conn.execute(
                    text(
                        f"INSERT INTO audit_records ({', '.join(names)}) "
                        f"VALUES ({', '.join(':' + k for k in names)})"
                    ),
                    row,
                )
    finally:
        db.close()
    reopened = Database(url)
    try:
        verdict = audit_verify(reopened, space_id)
        assert verdict.ok and verdict.checked == 2, verdict
        with reopened.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_records")).scalar() == 0
        with reopened.trail.engine.connect() as conn:
            moved = [dict(r) for r in conn.execute(text("SELECT * FROM audit_records")).mappings()]
        assert [{k: v for k, v in r.items() if k != "seq"} for r in moved] == [
            {k: v for k, v in r.items() if k != "seq"} for r in rows
        ]
    finally:
        reopened.close()


def test_the_trail_keeps_only_the_chains_index_in_old_and_new_files(tmp_path: Path) -> None:
    """An append writes every index of the trail: a new trail has only the chain's own
    ``(space_id, n)``, and the four secondary indexes an older trail file (or database) has
    are dropped when it opens, with its records and their chain intact."""
    url = f"sqlite:///{tmp_path / 'limner.db'}"
    db = Database(url)
    try:
        db.migrate()
        space_id = ensure_space(db, "default").id
        AuditLog(db).append(space_id, AuditEntry(action="login", outcome="ok"))
        for engine in (db.engine, db.trail.engine):
            with engine.connect() as conn:
                assert not _secondary_indexes(conn), engine.url
        with db.trail.engine.begin() as conn:  # the layout of an older trail file
            for column in ("space_id", "at", "key_id", "action"):
                conn.execute(
                    text(f"CREATE INDEX ix_audit_records_{column} ON audit_records ({column})")
                )
            assert len(_secondary_indexes(conn)) == 4
    finally:
        db.close()
    reopened = Database(url)
    try:
        with reopened.trail.engine.connect() as conn:
            assert not _secondary_indexes(conn)
        assert audit_verify(reopened, space_id).ok
    finally:
        reopened.close()


def _secondary_indexes(conn: Any) -> list[str]:
    rows = conn.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_records'")
    )
    return [r[0] for r in rows if r[0].startswith("ix_")]
