"""Revocation everywhere: once ``revoke_key`` (what ``limner keys revoke`` runs) has revoked a
key, nothing it opened keeps working. The key cannot log into the dashboard, the dashboard
sessions it opened end at once (pages, images and the state-changing forms), one-time login
links it made cannot be redeemed, and REST and gRPC refuse it. Another key of the same space
keeps working.

A real service on loopback (HTTP and gRPC) in this process; the keys are revoked through a
database connection of their own, as the CLI in another process would.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from limner.imaging import encode_png
from limner.protocol import grpc_predict_v2_pb2 as pb
from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, Explanation, Subscription, create_key, revoke_key, space_for_key

pytestmark = pytest.mark.slow

BRIGHT = encode_png(np.full((8, 8, 3), 230, np.uint8))


@dataclass
class Service:
    """The running service, its settings, its gRPC port and the allowed remote model."""

    url: str
    settings: Settings
    grpc_port: int
    remote: str

    def db(self) -> Database:
        """A connection of its own to the service's database (close it after use)."""
        return Database(self.settings.resolved_database_url())

    def new_key(self, space: str) -> str:
        """A new tenant key of ``space``."""
        db = self.db()
        try:
            return create_key(db, space)
        finally:
            db.close()

    def revoke(self, key: str) -> None:
        """Revoke ``key`` as ``limner keys revoke PREFIX`` does."""
        db = self.db()
        try:
            assert revoke_key(db, key[:10]).revoked_at is not None
        finally:
            db.close()

    def http(self, key: str) -> httpx.Client:
        """An HTTP client of the REST API with ``key``."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )


@dataclass
class Tenant:
    """A tenant key and what it made: a subscription with explainability on and one
    transaction with an explanation, and a subscription with explainability off."""

    key: str
    space_id: str
    subscription_id: str
    off_subscription_id: str
    scoring_id: str
    explanation_id: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, remote: str) -> Iterator[Service]:
    """limner with gRPC on a free port, the fake remote model service allowed."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("revocation"),
        database_url="",
        workers=1,
        grpc_port=0,
        allowed_urls=f"{remote}/",
        max_failed_keys=1000,  # the refusals here are not key guessing
    )
    db = Database(settings.resolved_database_url())
    db.migrate()
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        port = server.app.state.grpc_port
        assert port
        yield Service(server.url, settings, int(port), remote)


def _tenant(service: Service, space: str) -> Tenant:
    """A new key of ``space`` with subscriptions, a transaction and an explanation."""
    key = service.new_key(space)
    db = service.db()
    try:
        ref = space_for_key(db, key)
    finally:
        db.close()
    assert ref is not None
    body = {"scoring_url": f"{service.remote}/v2/models/bright", "labels": ["dark", "bright"]}
    with service.http(key) as http:
        sub = http.post("/v1/subscriptions", json={**body, "name": "on"})
        off = http.post("/v1/subscriptions", json={**body, "name": "off"})
        assert sub.status_code == off.status_code == 201, sub.text + off.text
        sub_id = sub.json()["id"]
        record = {"image": base64.b64encode(BRIGHT).decode(), "probabilities": [0.1, 0.9]}
        logged = http.post(
            f"/v1/subscriptions/{sub_id}/payload-records", json={"records": [record]}
        )
        assert logged.status_code == 200, logged.text
        scoring_id = logged.json()["records"][0]["scoring_id"]
        on = http.put(
            f"/v1/subscriptions/{sub_id}/explainability",
            json={"enabled": True, "samples": 16, "segmentation": "grid", "segments": 4},
        )
        assert on.status_code == 200, on.text
        job = http.post("/v1/explanations", json={"scoring_id": scoring_id})
        assert job.status_code == 202, job.text
    return Tenant(key, ref.id, sub_id, off.json()["id"], scoring_id, job.json()["id"])


def _csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def _login_page(service: Service) -> tuple[httpx.Client, str]:
    """A browser on the login form: the client (with the form's cookie) and the form's token."""
    browser = httpx.Client(base_url=service.url, timeout=60)
    page = browser.get("/ui/login")
    assert page.status_code == 200
    return browser, _csrf_of(page.text)


def _logged_in(service: Service, key: str) -> httpx.Client:
    """A browser with a dashboard session of ``key``."""
    browser, csrf = _login_page(service)
    response = browser.post("/ui/login", data={"key": key, "csrf": csrf})
    assert response.status_code == 303, response.text
    assert "limner_session" in browser.cookies
    return browser


def _sent_to_login(response: httpx.Response) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/ui/login")


def _pages(tenant: Tenant) -> list[str]:
    """Dashboard GETs that answer 200 to a live session of ``tenant``."""
    return [
        "/ui/subscriptions",
        f"/ui/subscriptions/{tenant.subscription_id}",
        f"/ui/explanations/{tenant.explanation_id}",
        f"/ui/media/transactions/{tenant.scoring_id}",
        f"/ui/explanations/{tenant.explanation_id}/status.json",
    ]


def _explanations(service: Service, tenant: Tenant) -> int:
    db = service.db()
    try:
        with db.session() as s:
            query = select(func.count()).select_from(Explanation)
            return int(s.scalar(query.where(Explanation.space_id == tenant.space_id)) or 0)
    finally:
        db.close()


def _explainability(service: Service, subscription_id: str) -> dict:
    db = service.db()
    try:
        with db.session() as s:
            sub = s.get(Subscription, subscription_id)
            assert sub is not None
            return dict(sub.explainability or {})
    finally:
        db.close()


def test_a_revoked_key_cannot_log_into_the_dashboard(service: Service) -> None:
    key = service.new_key("revoked-login")
    service.revoke(key)
    browser, csrf = _login_page(service)
    response = browser.post("/ui/login", data={"key": key, "csrf": csrf})
    assert response.status_code == 401
    assert "That API key is not known." in response.text  # as for a key that never existed
    assert "limner_session" not in response.headers.get("set-cookie", "")
    assert "limner_session" not in browser.cookies
    assert _sent_to_login(browser.get("/ui/subscriptions"))


def test_revoking_a_key_ends_its_open_sessions_at_once(service: Service) -> None:
    tenant = _tenant(service, "revoked-session")
    other_key = service.new_key("revoked-session")  # another key of the same space
    browser = _logged_in(service, tenant.key)
    bystander = _logged_in(service, other_key)
    cookie = browser.cookies["limner_session"]
    for path in _pages(tenant):
        assert browser.get(path).status_code == 200, path
    csrf = _csrf_of(browser.get(f"/ui/subscriptions/{tenant.subscription_id}").text)
    before = _explanations(service, tenant)
    assert _explainability(service, tenant.off_subscription_id).get("enabled") is not True

    service.revoke(tenant.key)

    replay = httpx.Client(base_url=service.url, cookies={"limner_session": cookie}, timeout=60)
    for client in (browser, replay):
        for path in _pages(tenant):
            assert _sent_to_login(client.get(path)), path
        explain = client.post(f"/ui/transactions/{tenant.scoring_id}/explain", data={"csrf": csrf})
        assert _sent_to_login(explain)
        enable = client.post(
            f"/ui/subscriptions/{tenant.off_subscription_id}/explainability", data={"csrf": csrf}
        )
        assert _sent_to_login(enable)
    assert _explanations(service, tenant) == before
    assert _explainability(service, tenant.off_subscription_id).get("enabled") is not True
    # The login form does not take the old session for a live one either.
    assert browser.get("/ui/login").status_code == 200
    # Only the revoked key's sessions end: another key of the same space keeps its own.
    for path in _pages(tenant):
        assert bystander.get(path).status_code == 200, path


def test_a_login_link_made_before_revocation_cannot_be_redeemed(service: Service) -> None:
    tenant = _tenant(service, "revoked-link")
    target = f"/ui/subscriptions/{tenant.subscription_id}"
    with service.http(tenant.key) as http:
        made = http.post("/ui/login-links", json={"next": target})
        assert made.status_code == 201, made.text
        spare = http.post("/ui/login-links", json={"next": target})
        assert spare.status_code == 201, spare.text

    service.revoke(tenant.key)

    browser = httpx.Client(timeout=60)
    redeemed = browser.get(made.json()["url"])
    assert redeemed.status_code == 303 and "expired=1" in redeemed.headers["location"]
    assert "limner_session" not in browser.cookies
    assert _sent_to_login(browser.get(service.url + target))
    second = httpx.get(spare.json()["url"], timeout=60)
    assert second.status_code == 303 and "limner_session" not in second.cookies
    with service.http(tenant.key) as http:
        assert http.post("/ui/login-links", json={"next": target}).status_code == 401


def _live(service: Service, key: str) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            stub.ServerLive(pb.ServerLiveRequest(), metadata=[("authorization", f"Bearer {key}")])
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_rest_and_grpc_refuse_a_revoked_key(service: Service) -> None:
    key = service.new_key("revoked-api")
    other_key = service.new_key("revoked-api")
    with service.http(key) as http:
        assert http.get("/v1/subscriptions").status_code == 200
        assert http.get("/v2/health/live").status_code == 200
    assert _live(service, key) == grpc.StatusCode.OK

    service.revoke(key)

    with service.http(key) as http:
        for path in ("/v1/subscriptions", "/v1/deployments", "/v2/health/live", "/metrics"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert "not known" in response.text, path  # as for a key that never existed
    assert _live(service, key) == grpc.StatusCode.UNAUTHENTICATED
    with service.http(other_key) as http:
        assert http.get("/v1/subscriptions").status_code == 200
    assert _live(service, other_key) == grpc.StatusCode.OK
