"""The dashboard in real Chromium (Debian's, driven by Playwright): log in, explain, enlarge.

Screenshots of every step go to ``test-output/ui/`` at the repository root.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_helpers import CHROMIUM, Dashboard, chromium_page

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the dev extra (playwright)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test)"),
]


@pytest.fixture(scope="module")
def shots(pytestconfig: pytest.Config) -> Path:
    """Where the screenshots go (emptied first)."""
    folder = pytestconfig.rootpath / "test-output" / "ui"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def page(dashboard: Dashboard) -> Iterator[sync_api.Page]:
    """A Chromium page on a laptop-sized screen."""
    with chromium_page() as page:
        yield page


def _all_images_loaded(page: sync_api.Page, selector: str) -> None:
    page.wait_for_function(
        """sel => { const imgs = [...document.querySelectorAll(sel)];
                    return imgs.length > 0
                        && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=selector,
        timeout=30_000,
    )


def test_login_explain_and_enlarge(dashboard: Dashboard, page: sync_api.Page, shots: Path) -> None:
    expect = sync_api.expect
    url, sub_id = dashboard.url, dashboard.subscription_id
    started = time.perf_counter()
    problems: list[str] = []
    failed: list[str] = []  # the URLs behind any "failed to load" in the console
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )

    # No session: every page leads to the login form; a wrong key says so.
    page.goto(f"{url}/ui/subscriptions")
    assert "/ui/login" in page.url
    page.fill("#key", "lmn_not-a-real-key")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not known")
    page.screenshot(path=shots / "01-login-wrong-key.png")
    assert all("status of 401" in p for p in problems), problems  # the refused login itself
    problems.clear()

    # The right key opens the space's subscriptions, then the transactions.
    page.fill("#key", dashboard.key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/ui/subscriptions")
    page.screenshot(path=shots / "02-subscriptions.png")
    page.click(f"a[href='/ui/subscriptions/{sub_id}']")
    expect(page.locator("table.transactions tbody tr")).to_have_count(3)
    _all_images_loaded(page, "table.transactions img")
    page.screenshot(path=shots / "03-transactions.png", full_page=True)

    # Keep the one worker busy, so the new job is seen waiting and then running.
    dashboard.client().explanations.create(dashboard.scoring_ids[1], samples=768)
    row = page.locator(f"tr[data-scoring-id='{dashboard.scoring_ids[0]}']")
    row.get_by_role("button", name="Explain").click()
    expect(page).to_have_url(re.compile(r"/ui/explanations/[0-9a-f]+$"))
    expect(page.locator("#job-progress")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("queued")
    page.screenshot(path=shots / "04-progress-queued.png")
    expect(page.locator("#job-status")).to_have_text("running", timeout=60_000)
    page.screenshot(path=shots / "05-progress-running.png")

    # Finished: the page reloads with the image, both panes and the heatmap.
    expect(page.locator(".panes")).to_be_visible(timeout=60_000)
    _all_images_loaded(page, ".panes img")
    for kind in ("image", "positive", "negative", "heatmap", "regions"):
        width = page.eval_on_selector(f"img[data-pane='{kind}']", "i => i.naturalWidth")
        assert width > 0, kind
    expect(page.locator(".bar")).to_have_count(8)
    # every bar has its interval's whisker; the top positive regions are shown as crops
    expect(page.locator(".bar svg line.err")).to_have_count(8 * 3)
    assert page.locator(".crop svg image").count() >= 1
    page.screenshot(path=shots / "06-explanation.png", full_page=True)

    # Hovering a region's bar outlines it over the panes.
    page.locator(".bar").first.hover()
    expect(page.locator("svg.overlay rect.hl.on")).to_have_count(5)
    box = page.eval_on_selector("svg.overlay rect.hl.on", "r => +r.getAttribute('width')")
    assert box > 0
    page.screenshot(path=shots / "07-region-outlined.png")

    # Any image enlarges in a dialog; Escape closes it.
    page.locator(".pane-heatmap button.zoom").click()
    dialog = page.locator("#lightbox")
    expect(dialog).to_be_visible()
    _all_images_loaded(page, "#lightbox-img")
    page.screenshot(path=shots / "08-lightbox.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The keyboard reaches the pane buttons and opens the lightbox too.
    page.locator(".pane-positive button.zoom").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Vertex-style views switch in place: each setting redraws the view pane from the stored
    # explanation (the job is not run again), and the page's address keeps the choice.
    jobs_before = len(dashboard.client().explanations.list())
    form, view = page.locator("#view-form"), page.locator("#view-pane")
    expect(form).to_be_visible()
    _all_images_loaded(page, "#view-pane")
    shown = {"start": view.screenshot()}
    for name, value in (
        ("type", "OUTLINES"),
        ("color_map", "RED_GREEN"),
        ("polarity", "both"),
        ("overlay_type", "GRAYSCALE"),
    ):
        before = view.get_attribute("src")
        form.locator(f"select[name={name}]").select_option(value)
        expect(view).not_to_have_attribute("src", before or "")
        assert f"{name}={value}" in (view.get_attribute("src") or "")
        _all_images_loaded(page, "#view-pane")
        page.wait_for_load_state("networkidle")
        shown[value] = view.screenshot()
        if name in ("type", "overlay_type"):  # these change pixels whatever the regions are
            assert shown[value] != list(shown.values())[-2], f"{name}={value} drew the same view"
    expect(page.locator(".pane-view figcaption").first).to_have_text(
        "View — outlines, both, RED_GREEN"
    )
    assert "overlay_type=GRAYSCALE" in page.url
    page.screenshot(path=shots / "08b-view-switched.png", full_page=True)
    assert len(dashboard.client().explanations.list()) == jobs_before

    # Back on the transactions, the explanation's state shows.
    page.goto(f"{url}/ui/subscriptions/{sub_id}")
    expect(row.locator(".badge")).to_have_text("finished")
    page.screenshot(path=shots / "09-transactions-explained.png", full_page=True)
    assert problems == [], (problems, failed)
    print(f"browser walk-through took {time.perf_counter() - started:.1f} s")
