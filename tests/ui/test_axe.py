"""Every dashboard page passes axe-core 4 (WCAG 2 A and AA) in real Chromium, and the
explanation page prints whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ui_helpers import CHROMIUM, FAST, Dashboard, chromium_page

pytest.importorskip("playwright.sync_api", reason="needs the dev extra (playwright)")
axe_sync = pytest.importorskip(
    "axe_playwright_python.sync_playwright", reason="needs the dev extra"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test)"),
]

#: The rule sets checked: WCAG 2.0 and 2.1, levels A and AA.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="module")
def page(dashboard: Dashboard) -> Iterator[Any]:
    """A logged-in page (axe is injected, so the page's CSP is bypassed for it alone)."""
    with chromium_page(bypass_csp=True) as page:
        page.goto(f"{dashboard.url}/ui/login")
        page.fill("#key", dashboard.key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{dashboard.url}/ui/subscriptions")
        yield page


def violations(page: Any) -> list[str]:
    """axe's WCAG 2 A/AA violations of the page as ``rule: target`` lines."""
    results = axe_sync.Axe().run(
        page, options={"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    )
    return [
        f"{v['id']}: {node['target']}"
        for v in results.response["violations"]
        for node in v["nodes"]
    ]


def dashboard_pages(dashboard: Dashboard) -> list[str]:
    """Every kind of dashboard page, with a finished explanation (made here)."""
    with dashboard.client() as client:
        exp = client.explanations.create(dashboard.scoring_ids[2], **FAST).wait(180)
    import httpx

    link = httpx.post(
        f"{dashboard.url}/ui/login-links",
        json={"next": "/ui/subscriptions"},
        headers={"Authorization": f"Bearer {dashboard.key}"},
    ).json()["url"]
    return [
        link.removeprefix(dashboard.url),  # the one-time link's "continue" page
        "/ui/login",
        "/ui/subscriptions",
        f"/ui/subscriptions/{dashboard.subscription_id}",
        f"/ui/explanations/{exp.id}",
        "/ui/explanations",
        "/ui/explanations?status=finished&method=kernelshap",
        "/ui/explanations?status=nonsense",  # a bad filter's message
        "/ui/explanations/0000",  # the not-found page
    ]


def test_every_page_has_no_wcag_violation(dashboard: Dashboard, page: Any) -> None:
    found: dict[str, list[str]] = {}
    for path in dashboard_pages(dashboard):
        page.goto(dashboard.url + path)
        page.wait_for_load_state("networkidle")
        found[path] = violations(page)
    assert all(not v for v in found.values()), found


def test_the_explanation_page_prints_whole(dashboard: Dashboard, page: Any) -> None:
    """Printed, every region's bar is on the page (no inner scroll box cuts any off)."""
    path = next(
        p
        for p in dashboard_pages(dashboard)
        if p.count("/") == 3
        and "?" not in p
        and p.startswith("/ui/explanations/")
        and not p.endswith("0000")
    )
    page.goto(dashboard.url + path)
    page.emulate_media(media="print")
    cut = page.eval_on_selector_all(
        ".bars",
        "els => els.filter(e => e.scrollHeight > e.clientHeight + 1).length",
    )
    assert cut == 0
    assert page.locator(".bar").count() > 0
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")


def test_tiny_images_are_pixels_and_region_numbers_stay_on_one_line(
    dashboard: Dashboard, page: Any
) -> None:
    """A 4×4 transaction is drawn with ``image-rendering: pixelated`` (not smeared), and a
    region's number keeps its "?" on its own line."""
    import numpy as np

    from limner.imaging import encode_png

    rng = np.random.default_rng(5)
    tiny = encode_png(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8))
    with dashboard.client() as client:
        sid = client.score(client.deployments.list()[0], tiny).scoring_id
        exp = client.explanations.create(
            sid, method="kernelshap", samples=64, segmentation="grid", segments=4
        ).wait(180)
    page.goto(f"{dashboard.url}/ui/explanations/{exp.id}")
    page.wait_for_load_state("networkidle")
    rendering = page.eval_on_selector(".pane-image img", "i => getComputedStyle(i).imageRendering")
    assert rendering == "pixelated"
    heights = page.eval_on_selector_all(
        ".bar .rid",
        "els => els.map(e => [e.getBoundingClientRect().height,"
        " parseFloat(getComputedStyle(e).lineHeight) || 20])",
    )
    assert heights and all(h <= 1.5 * line for h, line in heights)
