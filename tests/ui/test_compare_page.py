"""The compare page over HTTP: an explanation's "Compare with…" form creates a comparison of
two deployments of the same labels, and the compare page shows it (panes side by side, the
region table with a column per explanation, the agreement numbers the API reports, the
disagreements in words); the form is recorded in the audit trail, a viewer may use it, another
space sees 404 pages. In real Chromium (when present) the page passes axe and prints whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from ui_helpers import CHROMIUM, FAST, Dashboard, chromium_page, csrf_of, logged_in

from limner.store import Database, create_key
from limner.store.audit import AuditQuery, query
from limner.store.tables import Space


@dataclass
class Made:
    explanation_id: str
    comparison_id: str
    own_id: str
    other_id: str


@pytest.fixture(scope="module")
def made(dashboard: Dashboard) -> Iterator[Made]:
    """A second deployment of the built-in model; an explanation, compared through the form."""
    with dashboard.client() as client:
        own = next(d for d in client.deployments.list() if d.name == "imagenet")
        other = client.deployments.create(name="imagenet-b", model="efficientnet-lite0")
        exp = client.explanations.create(dashboard.scoring_ids[0], **FAST).wait(timeout=180)
    http = logged_in(dashboard.url, dashboard.key)
    page = http.get(f"/ui/explanations/{exp.id}")
    response = http.post(
        f"/ui/explanations/{exp.id}/compare",
        data={"csrf": csrf_of(page.text), "deployment": [own.id, other.id], "method": "kernelshap"},
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/ui/comparisons/")
    comparison_id = location.rsplit("/", 1)[-1]
    with dashboard.client() as client:
        client.comparisons.get(comparison_id).wait(timeout=180)
    yield Made(exp.id, comparison_id, own.id, other.id)


def test_the_explanation_page_offers_the_deployments_with_the_same_labels(
    dashboard: Dashboard, made: Made
) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    page = http.get(f"/ui/explanations/{made.explanation_id}")
    assert page.status_code == 200
    form = page.text.split('id="compare-with"', 1)[1].split("</form>", 1)[0]
    assert f'action="/ui/explanations/{made.explanation_id}/compare"' in form
    assert re.search(rf'value="{made.own_id}" checked> imagenet\b', form)
    assert re.search(rf'value="{made.other_id}"> imagenet-b\b', form)
    assert 'value="kernelshap" checked> kernelshap' in form and 'value="occlusion">' in form
    assert "<legend>Deployments</legend>" in form and "<legend>Methods</legend>" in form
    # an explanation of the comparison links back to it
    with dashboard.client() as client:
        column = client.comparisons.get(made.comparison_id).explanations[1]
    member = http.get(f"/ui/explanations/{column.id}")
    assert f'href="/ui/comparisons/{made.comparison_id}"' in member.text


def test_the_compare_page_shows_the_comparison(dashboard: Dashboard, made: Made) -> None:
    with dashboard.client() as client:
        comparison = client.comparisons.get(made.comparison_id)
    assert comparison.status == "finished"
    names = [e.name for e in comparison.explanations]
    assert names == ["imagenet · kernelshap", "imagenet-b · kernelshap"]
    http = logged_in(dashboard.url, dashboard.key)
    page = http.get(f"/ui/comparisons/{made.comparison_id}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert "<script>" not in html and " style=" not in html  # the CSP allows neither
    for cls in comparison.classes or []:
        ci = cls["class_index"]
        panes = html.split(f'id="class-{ci}"', 1)[1].split("</table>", 1)[0]
        # the image, then each explanation's positive and negative pane, in column order
        srcs = re.findall(r'<img src="([^"]+)"', panes)
        e1, e2 = (e.id for e in comparison.explanations)
        assert srcs == [
            f"/ui/media/transactions/{dashboard.scoring_ids[0]}",
            f"/ui/media/explanations/{e1}/{ci}/positive.png",
            f"/ui/media/explanations/{e2}/{ci}/positive.png",
            f"/ui/media/explanations/{e1}/{ci}/negative.png",
            f"/ui/media/explanations/{e2}/{ci}/negative.png",
        ]
        assert all(http.get(src).status_code == 200 for src in srcs)
        # the region table: one row per region, a weight column per explanation
        table = html.split('class="grid compare-regions"', 1)[1].split("</table>", 1)[0]
        assert len(re.findall(r'<th scope="row">#\d+</th>', table)) == len(cls["regions"]) == 8
        for name in names:
            assert f'<th scope="col">{name}</th>' in table
        weights = [f"{w:+.4f}" for r in cls["regions"] for w in r["weights"]]
        shown = re.findall(r'<span class="val">([^<]+)</span>', table)
        assert sorted(shown) == sorted(weights)
        # the agreement the API reports (one model deployed twice: the same weights)
        (pair,) = cls["agreement"]
        assert pair["spearman"] == pytest.approx(1.0) and pair["top3_overlap"] == 3
        assert f"{pair['spearman']:.2f}" in html and "3 of 3" in html
        assert "They agree" in html
    status = http.get(f"/ui/comparisons/{made.comparison_id}/status.json").json()
    assert status["status"] == "finished" and status["progress"] == 1.0


def test_disagreements_are_shown_in_words(dashboard: Dashboard) -> None:
    with dashboard.client() as client:
        comparison = client.comparisons.create(
            dashboard.scoring_ids[1], methods=["kernelshap", "occlusion", "rise"], **{
                k: v for k, v in FAST.items() if k != "method"
            }
        ).wait(timeout=180)  # fmt: skip
    texts = comparison.disagreements
    http = logged_in(dashboard.url, dashboard.key)
    html = http.get(f"/ui/comparisons/{comparison.id}").text
    assert len(re.findall(r'<th scope="col">imagenet · (?:kernelshap|occlusion|rise)</th>', html))
    listed = re.findall(r"<li>([^<]+)</li>", html.split("Where they disagree", 1)[1])
    assert [t.replace("&#39;", "'") for t in listed] == texts
    for pair in comparison.agreement:
        if pair.spearman is not None:
            assert f"{pair.spearman:.2f}" in html


def test_the_form_is_audited_and_open_to_viewers(dashboard: Dashboard, made: Made) -> None:
    db = Database(dashboard.settings.resolved_database_url())
    try:
        with db.session() as s:
            space_id = s.scalar(select(Space.id).where(Space.name == "default"))
        assert space_id is not None
        viewer = create_key(db, "default", role="viewer")
        http = logged_in(dashboard.url, viewer)
        page = http.get(f"/ui/explanations/{made.explanation_id}")
        response = http.post(
            f"/ui/explanations/{made.explanation_id}/compare",
            data={"csrf": csrf_of(page.text), "method": ["kernelshap", "lime"]},
        )
        assert response.status_code == 303, response.text
        viewer_comparison = response.headers["location"].rsplit("/", 1)[-1]
        rows, _ = query(db, space_id, AuditQuery(action="explanation.compare"), limit=200)
    finally:
        db.close()
    by_target = {r.target: r for r in rows}
    mine = by_target[made.comparison_id]
    assert mine.outcome == "ok" and mine.role == "admin" and mine.detail["via"] == "dashboard"
    theirs = by_target[viewer_comparison]
    assert theirs.role == "viewer" and theirs.outcome == "ok"
    with dashboard.client() as client:
        client.comparisons.get(viewer_comparison).wait(timeout=180)


@pytest.mark.parametrize(
    "data",
    [
        {"method": "evil"},  # not a method
        {"method": ["kernelshap"]},  # one explanation is no comparison
        {"deployment": ["0123456789abcdef"]},  # no such deployment
    ],
)
def test_a_refused_comparison_says_why(dashboard: Dashboard, made: Made, data: dict) -> None:
    http = logged_in(dashboard.url, dashboard.key)
    page = http.get(f"/ui/explanations/{made.explanation_id}")
    response = http.post(
        f"/ui/explanations/{made.explanation_id}/compare", data={"csrf": csrf_of(page.text), **data}
    )
    assert response.status_code in (404, 422), response.text
    assert "Cannot compare" in response.text and "Traceback" not in response.text
    assert f'href="/ui/explanations/{made.explanation_id}"' in response.text


def test_another_space_sees_404_pages(dashboard: Dashboard, made: Made) -> None:
    other = logged_in(dashboard.url, dashboard.new_key("elsewhere"))
    for path in (
        f"/ui/comparisons/{made.comparison_id}",
        f"/ui/comparisons/{made.comparison_id}/status.json",
        "/ui/comparisons/0123456789abcdef",
    ):
        response = other.get(path)
        assert response.status_code == 404, path
    csrf = csrf_of(other.get("/ui/subscriptions").text)
    forged = other.post(
        f"/ui/explanations/{made.explanation_id}/compare",
        data={"csrf": csrf, "method": ["kernelshap", "lime"]},
    )
    assert forged.status_code == 404
    assert httpx.get(f"{dashboard.url}/ui/comparisons/{made.comparison_id}").status_code == 303


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test)")
def test_the_compare_page_passes_axe_and_prints_whole(dashboard: Dashboard, made: Made) -> None:
    pytest.importorskip("playwright.sync_api", reason="needs the dev extra (playwright)")
    axe_sync = pytest.importorskip("axe_playwright_python.sync_playwright")
    with chromium_page(bypass_csp=True) as page:
        page.goto(f"{dashboard.url}/ui/login")
        page.fill("#key", dashboard.key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{dashboard.url}/ui/subscriptions")
        page.goto(f"{dashboard.url}/ui/comparisons/{made.comparison_id}")
        page.wait_for_load_state("networkidle")
        tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
        found: Any = axe_sync.Axe().run(
            page,
            options={"runOnly": {"type": "tag", "values": tags}, "resultTypes": ["violations"]},
        )
        assert [
            f"{v['id']}: {n['target']}" for v in found.response["violations"] for n in v["nodes"]
        ] == []
        page.emulate_media(media="print")
        # neither the table nor any box around it scrolls or clips: every row is printed
        cut = page.eval_on_selector(
            ".compare-regions",
            """t => { const out = []; for (let e = t; e; e = e.parentElement) {
                 const s = getComputedStyle(e);
                 if (e.scrollHeight > e.clientHeight + 1 && s.overflowY !== 'visible')
                   out.push(e.tagName + '.' + e.className); }
               return out; }""",
        )
        assert cut == []
        assert page.locator(".compare-regions tbody tr").count() == 8
        assert page.pdf(format="A4").startswith(b"%PDF")


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test)")
def test_compare_with_another_deployment_in_the_browser(dashboard: Dashboard, made: Made) -> None:
    """The reviewer's way: on an explanation, tick the other deployment, press Compare; the
    compare page follows the explanations until they finish, then shows the columns."""
    pytest.importorskip("playwright.sync_api", reason="needs the dev extra (playwright)")
    with dashboard.client() as client:
        exp = client.explanations.create(dashboard.scoring_ids[2], **FAST).wait(timeout=180)
    with chromium_page() as page:
        page.goto(f"{dashboard.url}/ui/login")
        page.fill("#key", dashboard.key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{dashboard.url}/ui/subscriptions")
        page.goto(f"{dashboard.url}/ui/explanations/{exp.id}")
        page.get_by_label("imagenet-b").check()
        page.click("#compare-submit")
        page.wait_for_url(re.compile(r".*/ui/comparisons/[0-9a-f]+$"))
        page.locator(".compare-regions").wait_for(timeout=120_000)  # reloaded once finished
        headers = page.locator(".compare-regions thead th").all_inner_texts()
        assert headers[2:] == ["imagenet · kernelshap", "imagenet-b · kernelshap"]
        assert page.locator(".compare-panes img").count() == 5 * len(
            page.locator("section.compare").all()
        )
