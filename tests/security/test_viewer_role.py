"""A viewer's key reads, explains, annotates and exports, and changes nothing else.

The attack test walks every route of the app: each non-read request a viewer may not make
(anything outside :data:`limner.service.audit.VIEWER_MAY`) is sent with a viewer's key (or a
viewer's dashboard session, for the dashboard's forms), with the real ids of a space that has
a deployment, a subscription, transactions, an explanation and an annotation, and a body that
would change the space were it accepted. Each must be 403, and every row of the database (and
every file of the data dir) must be as it was. New routes are picked up as they are added.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from fastapi.routing import iter_route_contexts
from sec_helpers import TINY_META, tiny_onnx
from sqlalchemy import select

from limner.imaging import encode_png
from limner.protocol import grpc_predict_v2_pb2 as pb
from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc
from limner.protocol import to_raw
from limner.service import EmbeddedServer, create_app
from limner.service.audit import READS, VIEWER_MAY
from limner.settings import Settings
from limner.store import Annotation, AuditRecord, Base, Database, Explanation, create_key, new_id

#: Dashboard forms that change no space: opening and ending one's own session.
SESSION_FORMS = {("POST", "/ui/login"), ("POST", "/ui/logout")}

#: Non-read routes that exist today: the walk must meet at least these (it cannot pass by
#: finding nothing).
KNOWN = {
    ("POST", "/v1/deployments"),
    ("DELETE", "/v1/deployments/{deployment_id}"),
    ("POST", "/v1/deployments/{deployment_id}/predictions"),
    ("POST", "/v1/subscriptions"),
    ("DELETE", "/v1/subscriptions/{subscription_id}"),
    ("PUT", "/v1/subscriptions/{subscription_id}/explainability"),
    ("POST", "/v1/subscriptions/{subscription_id}/payload-records"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/ui/subscriptions/{subscription_id}/explainability"),
}

#: Explanations that finish in well under a second with the tiny model.
FAST = {"enabled": True, "samples": 16, "segmentation": "grid", "segments": 4, "baseline": "gray"}


def mutating_routes() -> list[tuple[str, str]]:
    """(method, path) of every non-read route a viewer may not use (the app, not started)."""
    app = create_app(Settings(data_dir=Path("unused-data-dir"), database_url="sqlite://"))
    found = set()
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        for method in route.methods or ():
            if method in READS or (method, path) in VIEWER_MAY | SESSION_FORMS:
                continue
            found.add((method, path))
    return sorted(found, key=lambda mp: (mp[1], mp[0]))


ROUTES = mutating_routes()


def png(value: int) -> bytes:
    """An 8x8 gray PNG."""
    return encode_png(np.full((8, 8, 3), value, np.uint8))


@dataclass
class Desk:
    """A served space with one of everything, an admin's and a viewer's key."""

    url: str
    settings: Settings
    admin: str
    viewer: str
    grpc_port: int
    ids: dict[str, str] = field(default_factory=dict)
    model: bytes = b""

    def http(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    def db(self) -> Database:
        return Database(self.settings.resolved_database_url())


def _wait_finished(http: httpx.Client, explanation_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = http.get(f"/v1/explanations/{explanation_id}").json()["status"]
        if status in ("finished", "failed"):
            assert status == "finished"
            return
        time.sleep(0.1)
    raise AssertionError("the explanation did not finish")


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A space with two deployments (one subscribed), two transactions, a finished
    explanation and an annotation; an admin's key and a viewer's key named ``vera``."""
    data_dir = tmp_path_factory.mktemp("viewer-desk")
    model = tiny_onnx(data_dir.parent / "tiny.onnx").read_bytes()
    settings = Settings(data_dir=data_dir, database_url="", workers=2, grpc_port=0)
    db = Database(settings.resolved_database_url())
    db.migrate()
    admin = create_key(db, "desk", role="admin", name="ada")
    viewer = create_key(db, "desk", role="viewer", name="vera")
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        d = Desk(server.url, settings, admin, viewer, server.app.state.grpc_port, model=model)
        with d.http(admin) as h:
            for name in ("tiny", "spare"):
                dep = h.post(
                    "/v1/deployments",
                    data={"name": name, "metadata": json.dumps(TINY_META)},
                    files={"file": ("model.onnx", model, "application/octet-stream")},
                )
                assert dep.status_code == 201, dep.text
                d.ids[f"{name}_deployment"] = dep.json()["id"]
            d.ids["deployment_id"] = d.ids["tiny_deployment"]
            sub = h.post("/v1/subscriptions", json={"deployment_id": d.ids["deployment_id"]})
            assert sub.status_code == 201, sub.text
            d.ids["subscription_id"] = sub.json()["id"]
            h.put(f"/v1/subscriptions/{sub.json()['id']}/explainability", json=FAST)
            for value in (30, 220):
                scored = h.post(
                    f"/v1/deployments/{d.ids['deployment_id']}/predictions",
                    files={"file": ("x.png", png(value), "image/png")},
                )
                assert scored.status_code == 200, scored.text
            d.ids["scoring_id"] = scored.json()["predictions"][0]["scoring_id"]
            exp = h.post("/v1/explanations", json={"scoring_id": d.ids["scoring_id"]})
            assert exp.status_code == 202, exp.text
            d.ids["explanation_id"] = exp.json()["explanation_id"]
            _wait_finished(h, d.ids["explanation_id"])
        with d.db().session() as s:  # an annotation, whichever route makes them
            space_id = s.scalar(select(Explanation.space_id))
            s.add(
                Annotation(
                    id=new_id(),
                    space_id=space_id,
                    explanation_id=d.ids["explanation_id"],
                    key_id=None,
                    key_name="ada",
                    role="admin",
                    verdict="agree",
                    note="fixture",
                )
            )
        d.ids["space_id"] = str(space_id)
        yield d


def snapshot(d: Desk) -> dict[str, Any]:
    """Every row of every table but the audit trail (and keys' last use), and the data dir's
    files: what a refused request must leave as it was."""
    db = d.db()
    try:
        with db.session() as s:
            tables = {}
            for table in Base.metadata.sorted_tables:
                if table.name == AuditRecord.__tablename__:
                    continue
                cols = [c for c in table.columns if c.name != "last_used_at"]
                rows = s.execute(select(*cols)).all()
                tables[table.name] = sorted(repr(tuple(r)) for r in rows)
    finally:
        db.close()
    files = sorted(
        str(p.relative_to(d.settings.data_dir))
        for p in d.settings.data_dir.rglob("*")
        if p.is_file() and not p.name.startswith(("limner.db", "limner-audit.db"))
    )
    return {"tables": tables, "files": files}


def fill(path: str, d: Desk) -> str:
    """``path`` with the space's real ids (an id of a kind this test does not know yet: the
    space's first row of the table of that name)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        known = {
            "name": "tiny",
            "model_name": "tiny",
            "model_version": "1",
            "class_index": "1",
            "kind": "positive",
            "token": "not-a-token",
        }
        if name in d.ids:
            return d.ids[name]
        if name in known:
            return known[name]
        if name.endswith("_id"):
            return _first_id(d, name.removesuffix("_id") + "s")
        return "x"

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


def _first_id(d: Desk, table_name: str) -> str:
    table = Base.metadata.tables.get(table_name)
    if table is None or "id" not in table.columns or "space_id" not in table.columns:
        return "0" * 32
    db = d.db()
    try:
        with db.session() as s:
            found = s.scalar(
                select(table.c.id).where(table.c.space_id == d.ids["space_id"]).limit(1)
            )
    finally:
        db.close()
    return str(found or "0" * 32)


def body(method: str, path: str, d: Desk) -> dict[str, Any]:
    """A request body that would change the space were the request accepted."""
    image = png(128)
    tensor = {"name": "image", "datatype": "UINT8", "shape": [1, 8, 8, 3]}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/deployments"): {
            "data": {"name": "viewer-made", "metadata": json.dumps(TINY_META)},
            "files": {"file": ("model.onnx", d.model, "application/octet-stream")},
        },
        ("POST", "/v1/deployments/{deployment_id}/predictions"): {
            "files": {"file": ("x.png", image, "image/png")}
        },
        ("POST", "/v1/subscriptions"): {"json": {"deployment_id": d.ids["spare_deployment"]}},
        ("PUT", "/v1/subscriptions/{subscription_id}/explainability"): {"json": {"enabled": False}},
        ("POST", "/v1/subscriptions/{subscription_id}/payload-records"): {
            "json": {
                "records": [
                    {
                        "scoring_id": "viewer-record",
                        "image": base64.b64encode(image).decode(),
                        "probabilities": [0.5, 0.5],
                    }
                ]
            }
        },
        ("POST", "/v2/models/{name}/infer"): {
            "json": {"inputs": [{**tensor, "data": [128] * 192}]}
        },
    }
    return bodies.get((method, path), {"json": {}})


def test_the_walk_meets_every_route_known_today() -> None:
    missing = KNOWN - set(ROUTES)
    assert not missing, f"routes the walk did not find: {missing}"
    assert not {r for r in ROUTES if r in VIEWER_MAY}


@pytest.fixture(scope="module")
def viewer_session(desk: Desk) -> httpx.Client:
    """A dashboard session of the viewer's key."""
    http = httpx.Client(base_url=desk.url, timeout=60)
    page = http.get("/ui/login")
    login = http.post("/ui/login", data={"key": desk.viewer, "csrf": _csrf(page.text)})
    assert login.status_code == 303, login.text
    return http


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no form with a CSRF token on the page"
    return match.group(1)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_a_viewer_is_refused_and_nothing_changes(
    desk: Desk, viewer_session: httpx.Client, method: str, path: str
) -> None:
    before = snapshot(desk)
    url = fill(path, desk)
    if path.startswith("/ui/"):
        page = viewer_session.get(f"/ui/subscriptions/{desk.ids['subscription_id']}")
        form = {"csrf": _csrf(page.text), "enabled": "false", "note": "viewer", "verdict": "agree"}
        resp = viewer_session.request(method, url, data=form)
        assert resp.status_code == 403, (method, path, resp.status_code, resp.text[:300])
        assert "Not allowed" in resp.text
    else:
        with desk.http(desk.viewer) as http:
            resp = http.request(method, url, **body(method, path, desk))
        assert resp.status_code == 403, (method, path, resp.status_code, resp.text[:300])
        error = resp.json()["error"]
        message = error if path.startswith("/v2/") else error["message"]
        assert "viewer" in message and "Traceback" not in resp.text
    assert snapshot(desk) == before, f"{method} {path} changed the space"


def test_the_refusals_are_in_the_audit_trail(desk: Desk, viewer_session: httpx.Client) -> None:
    with desk.http(desk.viewer) as http:
        refused = http.put(
            f"/v1/subscriptions/{desk.ids['subscription_id']}/explainability",
            json={"enabled": False},
        )
        assert refused.status_code == 403
        records = http.get("/v1/audit", params={"action": "subscription.settings"}).json()
    newest = records["records"][0]
    assert (newest["outcome"], newest["role"], newest["key_name"]) == ("denied", "viewer", "vera")
    assert newest["target"] == desk.ids["subscription_id"] and newest["detail"]["status"] == 403


def test_the_deployment_still_scores_and_its_settings_hold(desk: Desk) -> None:
    with desk.http(desk.admin) as http:
        scored = http.post(
            f"/v1/deployments/{desk.ids['deployment_id']}/predictions",
            files={"file": ("x.png", png(250), "image/png")},
        )
        assert scored.status_code == 200, scored.text
        assert scored.json()["predictions"][0]["label"] == "bright"
        sub = http.get(f"/v1/subscriptions/{desk.ids['subscription_id']}").json()
    assert sub["explainability"]["enabled"] is True
    assert sub["explainability"]["samples"] == FAST["samples"]


def _infer_request() -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="tiny")
    req.inputs.add(name="image", datatype="UINT8", shape=[1, 8, 8, 3])
    req.raw_input_contents.append(to_raw("UINT8", np.full((1, 8, 8, 3), 240, np.uint8)))
    return req


def test_grpc_model_infer_with_a_viewer_key_is_permission_denied(desk: Desk) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{desk.grpc_port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        before = snapshot(desk)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(_infer_request(), metadata=[("authorization", f"Bearer {desk.viewer}")])
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "viewer" in (refused.value.details() or "")
        assert snapshot(desk) == before
        # the same request with a key that may score is answered and logged
        scored = stub.ModelInfer(
            _infer_request(), metadata=[("authorization", f"Bearer {desk.admin}")]
        )
        assert json.loads(scored.parameters["scoring_ids"].string_param)[0]
        assert snapshot(desk) != before
    finally:
        channel.close()


def test_a_viewer_dashboard_form_is_refused_and_recorded(
    desk: Desk, viewer_session: httpx.Client
) -> None:
    sub_id = desk.ids["subscription_id"]
    page = viewer_session.get(f"/ui/subscriptions/{sub_id}")
    assert page.status_code == 200
    before = snapshot(desk)
    refused = viewer_session.post(
        f"/ui/subscriptions/{sub_id}/explainability", data={"csrf": _csrf(page.text)}
    )
    assert refused.status_code == 403 and "Not allowed" in refused.text
    assert snapshot(desk) == before
    with desk.http(desk.admin) as http:
        newest = http.get("/v1/audit", params={"limit": 1}).json()["records"][0]
    assert (newest["outcome"], newest["key_name"], newest["role"]) == ("denied", "vera", "viewer")
    assert newest["target"] == f"/ui/subscriptions/{sub_id}/explainability"


def test_a_viewers_login_link_logs_in_as_a_viewer(desk: Desk) -> None:
    with desk.http(desk.viewer) as http:
        made = http.post("/ui/login-links", json={"next": "/ui/subscriptions"})
    assert made.status_code == 201, made.text
    link = made.json()["url"]
    browser = httpx.Client(base_url=desk.url, timeout=60)
    landed = browser.get(link.removeprefix(desk.url))
    assert landed.status_code == 200 and "limner_session" in browser.cookies
    page = browser.get(f"/ui/subscriptions/{desk.ids['subscription_id']}")
    assert page.status_code == 200
    header = re.search(r'<span class="key"[^>]*>(.*?)</span>', page.text, re.S)
    assert header is not None
    assert "vera" in header.group(1) and "viewer" in header.group(1)
    before = snapshot(desk)
    refused = browser.post(
        f"/ui/subscriptions/{desk.ids['subscription_id']}/explainability",
        data={"csrf": _csrf(page.text)},
    )
    assert refused.status_code == 403
    assert snapshot(desk) == before
    with desk.http(desk.admin) as http:
        logins = http.get("/v1/audit", params={"action": "login"}).json()["records"]
    assert any(r["detail"].get("via") == "link" and r["key_name"] == "vera" for r in logins)


def test_a_viewer_may_request_an_explanation_under_its_name(desk: Desk) -> None:
    with desk.http(desk.viewer) as http:
        queued = http.post("/v1/explanations", json={"scoring_id": desk.ids["scoring_id"]})
        assert queued.status_code == 202, queued.text
        explanation_id = queued.json()["explanation_id"]
        _wait_finished(http, explanation_id)
    db = desk.db()
    try:
        with db.session() as s:
            row = s.get(Explanation, explanation_id)
            assert row is not None
            assert (row.requested_by, row.requested_role) == ("vera", "viewer")
    finally:
        db.close()
