"""An object detector in the dashboard, in real Chromium, as ``make demo`` leaves it: the demo's
own detector step (the built-in face detector deployed, the astronaut photo scored, its face box
explained) on a fresh service; then the browser sees the boxes over the transaction's image,
clicks one to explain it, and gets the panes with the box outlined."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ui_helpers import CHROMIUM, Dashboard, chromium_page

from limner.cli.demo import detector_walkthrough
from limner.explain.detection import BOX_COLOUR
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the dev extra (playwright)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test)"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, str, Path]]:
    """A service set up by the demo's detector step; its line and panes folder."""
    data_dir = tmp_path_factory.mktemp("limner-detector-ui")
    out = tmp_path_factory.mktemp("demo-out")
    settings = Settings(data_dir=data_dir, database_url="", workers=2)
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "demo", role="admin")
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        board = Dashboard(server.url, key, settings)
        with board.client() as client:
            line = detector_walkthrough(client, out)
            board.subscription_id = client.subscriptions.list()[0].id
        yield board, line, out


def test_the_demos_detector_in_the_dashboard(demo: tuple[Dashboard, str, Path]) -> None:
    board, line, out = demo
    assert line.startswith("Object detection: opencv-faces sees a face")
    assert (out / "astronaut-face" / "result.json").is_file()
    expect = sync_api.expect
    with chromium_page() as page:
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(f"{board.url}/ui/login")
        page.fill("#key", board.key)
        page.click("button[type=submit]")
        page.goto(f"{board.url}/ui/subscriptions/{board.subscription_id}")

        # the transaction shows its boxes over its image, each a button that explains it
        boxes = page.locator(".boxes button.box")
        expect(boxes).to_have_count(1)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.boxes img')].every(i => i.complete"
            " && i.naturalWidth > 0)"
        )
        frame = page.eval_on_selector(".boxes img", "i => i.getBoundingClientRect().toJSON()")
        box = boxes.first.bounding_box()
        assert box is not None
        # her face: in the upper middle of the photo, a fifth of its width or so
        assert frame["x"] < box["x"] < box["x"] + box["width"] < frame["x"] + frame["width"]
        assert 0.1 < box["width"] / frame["width"] < 0.4
        assert box["y"] < frame["y"] + frame["height"] / 2
        page.screenshot(path=str(out / "01-boxes.png"), full_page=True)

        boxes.first.click()
        expect(page).to_have_url(re.compile(r"/ui/explanations/[0-9a-f]+$"))
        expect(page.locator(".panes")).to_be_visible(timeout=120_000)
        expect(page.locator("#detected-box")).to_contain_text("Box 0: face")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.panes img')].every(i => i.complete"
            " && i.naturalWidth > 0)"
        )
        src = page.get_attribute("img[data-pane='positive']", "src")
        assert src
        pane = page.request.get(f"{board.url}{src}" if src.startswith("/") else src)
        rgb = np.asarray(Image.open(io.BytesIO(pane.body())).convert("RGB")).astype(int)
        yellow = (np.abs(rgb - BOX_COLOUR).sum(axis=2) < 60).sum()
        assert yellow > 100, "the explained box is outlined on the positive pane"
        page.screenshot(path=str(out / "02-box-explained.png"), full_page=True)
        assert not problems, problems


def test_the_box_form_is_the_spaces_own_and_checked(demo: tuple[Dashboard, str, Path]) -> None:
    """Attack tests of the box field of the dashboard's explain form: another space's session
    gets 404 for the transaction, a box that is not there or not a number is refused, and
    nothing is queued by any of them."""
    from ui_helpers import csrf_of, logged_in

    board, _, _ = demo
    with board.client() as client:
        sid = client.transactions.list(limit=1).transactions[0]["scoring_id"]
        before = len(client.explanations.list(sid))
    stranger = logged_in(board.url, board.new_key("elsewhere"))
    csrf = csrf_of(stranger.get("/ui/subscriptions").text)
    r = stranger.post(f"/ui/transactions/{sid}/explain", data={"csrf": csrf, "box": "0"})
    assert r.status_code == 404
    owner = logged_in(board.url, board.key)
    csrf = csrf_of(owner.get(f"/ui/subscriptions/{board.subscription_id}").text)
    for box in ("5", "-1", "x"):
        r = owner.post(f"/ui/transactions/{sid}/explain", data={"csrf": csrf, "box": box})
        assert r.status_code in (303, 422), r.text
        if r.status_code == 303:  # refused: back to the subscription with the notice
            assert "notice=box" in r.headers["location"]
    with board.client() as client:
        assert len(client.explanations.list(sid)) == before
