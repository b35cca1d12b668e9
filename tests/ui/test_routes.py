"""Dashboard routes over HTTP: login, logout, CSRF, space isolation, one-time links."""

from __future__ import annotations

import httpx
import pytest
from ui_helpers import Dashboard, csrf_of, logged_in


def test_login_success_sets_a_strict_httponly_session(dashboard: Dashboard) -> None:
    http = httpx.Client(base_url=dashboard.url)
    page = http.get("/ui/login", params={"next": f"/ui/subscriptions/{dashboard.subscription_id}"})
    assert page.status_code == 200 and page.text.startswith("<!doctype html>")
    response = http.post(
        "/ui/login",
        data={
            "key": dashboard.key,
            "csrf": csrf_of(page.text),
            "next": f"/ui/subscriptions/{dashboard.subscription_id}",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/subscriptions/{dashboard.subscription_id}"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("limner_session=")
    )
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/ui" in cookie
    listing = http.get(f"/ui/subscriptions/{dashboard.subscription_id}")
    assert listing.status_code == 200
    assert all(sid in listing.text for sid in dashboard.scoring_ids)


def test_wrong_key_shows_an_error_and_no_session(dashboard: Dashboard) -> None:
    http = httpx.Client(base_url=dashboard.url)
    page = http.get("/ui/login")
    response = http.post("/ui/login", data={"key": "lmn_wrong", "csrf": csrf_of(page.text)})
    assert response.status_code == 401
    assert "That API key is not known." in response.text
    assert "limner_session" not in response.headers.get("set-cookie", "")
    assert http.get("/ui/subscriptions").status_code == 303


def test_pages_without_a_session_redirect_to_login(dashboard: Dashboard) -> None:
    paths = [
        "/ui/subscriptions",
        f"/ui/subscriptions/{dashboard.subscription_id}",
        f"/ui/transactions/{dashboard.scoring_ids[0]}",
        f"/ui/media/transactions/{dashboard.scoring_ids[0]}",
    ]
    for path in paths:
        response = httpx.get(dashboard.url + path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=/ui/"), path
    forged = httpx.get(dashboard.url + "/ui/subscriptions", cookies={"limner_session": "x.y"})
    assert forged.status_code == 303


def test_logout_ends_the_session_even_for_a_copied_cookie(dashboard: Dashboard) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    cookie = http.cookies["limner_session"]
    page = http.get("/ui/subscriptions")
    response = http.post("/ui/logout", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert http.get("/ui/subscriptions").status_code == 303
    replay = httpx.get(dashboard.url + "/ui/subscriptions", cookies={"limner_session": cookie})
    assert replay.status_code == 303


def test_post_forms_without_the_csrf_token_are_refused(dashboard: Dashboard) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    sid = dashboard.scoring_ids[0]
    for data in ({}, {"csrf": "forged"}):
        response = http.post(f"/ui/transactions/{sid}/explain", data=data)
        assert response.status_code == 403 and "Form expired" in response.text
        assert http.post("/ui/logout", data=data).status_code == 403
    assert dashboard.client().explanations.list(scoring_id=sid) == []
    fresh = httpx.Client(base_url=dashboard.url)
    fresh.get("/ui/login")
    login = fresh.post("/ui/login", data={"key": dashboard.key, "csrf": "guess"})
    assert login.status_code == 403 and "limner_session" not in fresh.cookies


def test_another_space_sees_404_pages(dashboard: Dashboard) -> None:
    other = logged_in(dashboard.url, dashboard.new_key("elsewhere"))
    assert other.get("/ui/subscriptions").status_code == 200
    assert dashboard.subscription_id not in other.get("/ui/subscriptions").text
    sid = dashboard.scoring_ids[0]
    for path in (
        f"/ui/subscriptions/{dashboard.subscription_id}",
        f"/ui/transactions/{sid}",
        f"/ui/media/transactions/{sid}",
        "/ui/explanations/0123456789abcdef",
    ):
        response = other.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text and "text/html" in response.headers["content-type"]
    csrf = csrf_of(other.get("/ui/subscriptions").text)
    assert other.post(f"/ui/transactions/{sid}/explain", data={"csrf": csrf}).status_code == 404


def test_one_time_login_link(dashboard: Dashboard) -> None:
    target = f"/ui/subscriptions/{dashboard.subscription_id}"
    made = httpx.post(
        dashboard.url + "/ui/login-links",
        headers={"Authorization": f"Bearer {dashboard.key}"},
        json={"next": target},
    )
    assert made.status_code == 201
    url = made.json()["url"]
    http = httpx.Client()
    page = http.get(url)
    assert page.status_code == 200 and f'href="{target}"' in page.text
    assert http.get(dashboard.url + target).status_code == 200
    again = httpx.get(url)
    assert again.status_code == 303 and "expired=1" in again.headers["location"]
    assert httpx.post(dashboard.url + "/ui/login-links", json={}).status_code == 401


def test_explain_when_explainability_is_off_offers_the_defaults(dashboard: Dashboard) -> None:
    from skimage import data

    from limner.imaging import encode_png

    with dashboard.client() as client:
        dep = client.deployments.create(name="plain", model="efficientnet-lite0")
        sub = client.subscriptions.create(deployment_id=dep.id)
        sid = str(client.score(dep, encode_png(data.rocket())).scoring_id)
    http = logged_in(dashboard.url, dashboard.key)
    page = http.get(f"/ui/subscriptions/{sub.id}")
    assert "Explainability is off" in page.text
    response = http.post(f"/ui/transactions/{sid}/explain", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 303 and "notice=off" in response.headers["location"]
    enable = http.post(
        f"/ui/subscriptions/{sub.id}/explainability", data={"csrf": csrf_of(page.text)}
    )
    assert enable.status_code == 303
    assert dashboard.client().subscriptions.get(sub.id).explainability["enabled"] is True


def test_transactions_are_paged(dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    from limner.service.ui import find_pages

    monkeypatch.setattr(find_pages, "PAGE_SIZE", 2)
    http = logged_in(dashboard.url, dashboard.key)
    path = f"/ui/subscriptions/{dashboard.subscription_id}"
    first, second = http.get(path).text, http.get(path, params={"page": 2}).text
    assert "Page 1 of 2" in first and 'rel="next"' in first
    assert "Page 2 of 2" in second and 'rel="prev"' in second
    newest_first = list(reversed(dashboard.scoring_ids))
    assert all(sid in first for sid in newest_first[:2]) and newest_first[2] not in first
    assert newest_first[2] in second


def test_pages_forbid_framing_and_foreign_scripts(dashboard: Dashboard) -> None:
    page = httpx.get(dashboard.url + "/ui/login")
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert page.headers["cache-control"] == "no-store"


def test_a_gradient_explanation_shows_its_saliency_pane(dashboard: Dashboard) -> None:
    with dashboard.client() as client:
        exp = client.explanations.create(dashboard.scoring_ids[0], method="gradcam")
        exp.wait(timeout=600)
    http = logged_in(dashboard.url, dashboard.key)
    page = http.get(f"/ui/explanations/{exp.id}")
    assert page.status_code == 200
    ci = exp.explained_classes[0]
    src = f"/ui/media/explanations/{exp.id}/{ci}/saliency.png"
    assert src in page.text and "Saliency" in page.text
    pane = http.get(src)
    assert pane.status_code == 200 and pane.content.startswith(b"\x89PNG")
    other = logged_in(dashboard.url, dashboard.new_key("elsewhere"))
    assert other.get(src).status_code == 404  # another space cannot read the pane


def test_an_explanation_without_curves_shows_no_faithfulness_numbers(dashboard: Dashboard) -> None:
    with dashboard.client() as client:
        exp = client.explanations.create(dashboard.scoring_ids[1], curves=False)
        exp.wait(timeout=600)
    assert exp.result is not None and exp.result["explanations"][0]["deletion_auc"] is None
    page = logged_in(dashboard.url, dashboard.key).get(f"/ui/explanations/{exp.id}")
    assert page.status_code == 200
    assert "Deletion AUC</dt><dd>—" in page.text and "Sufficient</dt><dd" in page.text
