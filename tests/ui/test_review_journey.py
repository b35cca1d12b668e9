"""The reviewer's journey in real Chromium: log in with a viewer key, filter the transactions
by true label to find the misclassified one, explain it with two deployments, open the compare
view, add a verdict, export the PDF; the PDF's text carries the region table, the verdict, the
reviewer's key name and the artifact's hash, and every page of it renders. Every page visited
passes axe-core (WCAG 2 A and AA).

Screenshots go to ``test-output/review/`` at the repository root.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ui_helpers import CHROMIUM, chromium_page

from limner.client import APIClient
from limner.imaging import encode_png
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the dev extra (playwright)")
axe_sync = pytest.importorskip(
    "axe_playwright_python.sync_playwright", reason="needs the dev extra"
)
pypdf = pytest.importorskip("pypdf", reason="needs the dev extra (pypdf)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test)"),
]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from test_compare import meta, tiny_classifier  # noqa: E402

SETTINGS = {"samples": 64, "segmentation": "slic", "segments": 12, "baseline": "gray"}
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
REVIEWER = "Dana Reyes (model risk)"


@dataclass
class Desk:
    url: str
    viewer_key: str
    sub_id: str
    misclassified: str
    truth: str
    deployments: dict[str, str]  # name -> id
    sha256: dict[str, str]  # name -> artifact hash


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A team's space: two deployments of the same labels, three scored images with their true
    labels logged (one misclassified), and a viewer's key for the reviewer."""
    data_dir = tmp_path_factory.mktemp("review")
    settings = Settings(data_dir=data_dir, database_url="", workers=2)
    db = Database(settings.resolved_database_url())
    db.migrate()
    owner = create_key(db, "credit-team", role="tenant", name="Alex (ML)")
    viewer = create_key(db, "credit-team", role="viewer", name=REVIEWER)
    db.close()
    models = tmp_path_factory.mktemp("models")
    with EmbeddedServer(create_app(settings)) as server, APIClient(server.url, owner) as client:
        deps, hashes = {}, {}
        for name, size, channels in (
            ("even", 8, (1.0, 1.0, 1.0)),
            ("reddish", 16, (4.0, 1.0, 0.2)),
        ):
            path = tiny_classifier(models / f"{name}.onnx", size=size, channels=channels)
            deps[name] = client.deployments.create(
                name=name, file=path, metadata=meta(name, size)
            ).id
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        sub = client.subscriptions.create(deployment_id=deps["even"])
        sub.enable_explainability(**SETTINGS)
        rng = np.random.default_rng(3)
        scored = []
        for level in (40, 215, 120):
            image = np.clip(rng.normal(level, 25, (60, 80, 3)), 0, 255).astype(np.uint8)
            image[10:40, 20:50] = 255 - level  # a patch that argues for the other class
            scored.append(client.score(deps["even"], encode_png(image)))
        # the true labels arrive later: the first two agree with the model, the last does not
        for s in scored[:2]:
            client.transactions.set_feedback(s.scoring_id, s.label)
        wrong = scored[2]
        truth = "bright" if wrong.label == "dark" else "dark"
        client.transactions.set_feedback(wrong.scoring_id, truth)
        yield Desk(server.url, viewer, sub.id, str(wrong.scoring_id), truth, deps, hashes)


def violations(page: Any) -> list[str]:
    options = {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    results = axe_sync.Axe().run(page, options=options)
    return [f"{v['id']}: {n['target']}" for v in results.response["violations"] for n in v["nodes"]]


@pytest.fixture(scope="module")
def shots(pytestconfig: pytest.Config) -> Path:
    folder = pytestconfig.rootpath / "test-output" / "review"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def test_the_reviewers_journey(desk: Desk, shots: Path) -> None:
    expect = sync_api.expect
    axe_found: dict[str, list[str]] = {}
    with chromium_page(bypass_csp=True, accept_downloads=True) as page:
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

        def check(name: str) -> None:
            page.wait_for_load_state("networkidle")
            axe_found[name] = violations(page)
            page.screenshot(path=shots / f"{len(axe_found):02d}-{name}.png", full_page=True)

        # log in with the viewer's key: the header names the reviewer and the role
        page.goto(f"{desk.url}/ui/login")
        check("login")
        page.fill("#key", desk.viewer_key)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{desk.url}/ui/subscriptions")
        expect(page.locator("header")).to_contain_text(REVIEWER)
        expect(page.locator("header")).to_contain_text("viewer")
        check("subscriptions")

        # filter the transactions by true label and misclassified: the one wrong prediction
        page.goto(f"{desk.url}/ui/subscriptions/{desk.sub_id}")
        truth = page.locator(f"tr[data-scoring-id='{desk.misclassified}']").count()
        assert truth == 1
        page.fill("#f-true-label", desk.truth)
        page.select_option("#f-misclassified", "true")
        page.click("#filters button[type=submit]")
        rows = page.locator("table.transactions tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-scoring-id", desk.misclassified)
        check("transactions-misclassified")

        # explain it (a viewer may), then compare with the second deployment
        rows.first.get_by_role("button", name=re.compile("Explain")).click()
        expect(page).to_have_url(re.compile(r"/ui/explanations/[0-9a-f]+$"))
        expect(page.locator(".panes").first).to_be_visible(timeout=90_000)
        explanation_url = page.url
        check("explanation")
        page.check(f"input[name=deployment][value='{desk.deployments['reddish']}']")
        page.click("#compare-submit")
        expect(page).to_have_url(re.compile(r"/ui/comparisons/[0-9a-f]+"))
        expect(page.locator("text=Spearman").first).to_be_visible(timeout=90_000)
        check("compare")

        # back on the explanation: the verdict, then the PDF
        page.goto(explanation_url)
        page.check("input[name=verdict][value=rejected]")
        page.fill("#annotation-note", "Decided by the patch, not the scene; retrain.")
        page.click("#annotate-submit")
        expect(page.locator(".review .annotations")).to_contain_text("rejected")
        expect(page.locator(".review .annotations")).to_contain_text(REVIEWER)
        check("verdict")
        with page.expect_download() as download:
            page.click("#report-pdf")
        pdf = Path(download.value.path()).read_bytes()
        assert problems == [], problems

    reader = pypdf.PdfReader(io.BytesIO(pdf))
    texts = [p.extract_text() for p in reader.pages]
    assert len(texts) >= 1 and all(t.strip() for t in texts)  # every page renders text
    flat = " ".join(" ".join(texts).split())
    assert "rejected" in flat and REVIEWER in flat
    assert desk.sha256["even"] in flat.replace(" ", "")
    assert re.search(r"[+-]0\.\d{4}", flat)  # the region table's weights
    assert all(not v for v in axe_found.values()), axe_found
