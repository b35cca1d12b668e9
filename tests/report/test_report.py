"""Reports of real explanations: self-contained HTML, the PDF rendered from it, user text escaped,
nothing fetched from outside, and plain-language readings of the faithfulness numbers."""

from __future__ import annotations

import hashlib
import io
import re
import threading
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from PIL import Image

import limner
from limner.report import ReportAnnotation, ReportExplanation, render_html, render_pdf
from limner.report.reading import deletion_reading, insertion_reading, sets_reading
from limner.samples import sample_photo

SHA = hashlib.sha256(b"the deployed model").hexdigest()
NOTE = "<script>alert('x')</script> the ears & whiskers carry it"
WHEN = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def _png(array) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def item(lite0) -> ReportExplanation:
    """A report item built from a real explanation of a bundled photo by the built-in model."""
    exp = limner.explain(sample_photo("chelsea"), lite0, seed=0)
    top = exp.classes[0]
    return ReportExplanation(
        explanation_id="ex_7f3a",
        status="done",
        method=exp.method,
        result=exp.to_dict(),
        scoring_id="tx-0042",
        label=top.label,
        probability=top.probability,
        deployment="cats <prod>",
        artifact_sha256=SHA,
        image=_png(exp.image),
        panes={c: {k: exp.png(c, k) for k in exp.pane_kinds} for c in exp.explained_classes},
        requested_by="Dana Okafor",
        requested_role="viewer",
        requested_at=WHEN,
        source="chelsea.png",
        external_id="case-42",
        feedback="tabby",
        annotations=[
            ReportAnnotation("Rui Tanaka", "tenant", "needs-follow-up", NOTE, WHEN),
            ReportAnnotation("Dana Okafor", "viewer", None, "a note only", WHEN),
        ],
    )


@pytest.fixture(scope="module")
def html(item) -> str:
    return render_html([item], title="Review of case 42", generated_at=WHEN)


def test_html_is_self_contained(html, item):
    assert not re.search(r"https?://", html)
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "url(" not in html and "@import" not in html
    panes = len(set(item.panes[item.result["explanations"][0]["class_index"]]) - {"labels"})
    assert html.count('src="data:image/png;base64,') == 1 + panes  # the image and its panes


def test_user_text_is_escaped(html):
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "cats &lt;prod&gt;" in html and "&amp; whiskers" in html


def test_html_shows_the_explanation(html, item):
    c = item.result["explanations"][0]
    for text in (SHA, "Dana Okafor (viewer), 2025-03-01 09:30 UTC", "tx-0042", "case-42", "tabby"):
        assert text in html
    assert f"Deletion AUC {c['deletion_auc']:.2f} vs {c['random_deletion_auc']:.2f}" in html
    assert f"Insertion AUC {c['insertion_auc']:.2f} vs {c['random_insertion_auc']:.2f}" in html
    assert "much faster than chance" in html  # the cat's ranking beats random orders clearly
    assert "note only" in html


def test_pdf_carries_the_report(html, item):
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(render_pdf(html)))
    pages = [page.extract_text() for page in reader.pages]
    assert len(pages) >= 1
    for n, text in enumerate(pages, 1):  # every page rendered, footer included
        assert f"Page {n} of {len(pages)}" in text
    flat = "".join("".join(pages).split())
    c = item.result["explanations"][0]
    for r in c["regions"]:  # the whole region table
        assert f"{r['id']}{r['weight']:+.4f}{r['share']:.1f}" in flat, r
    for text in (SHA, "needs-follow-up", "RuiTanaka", "tx-0042", "<script>alert('x')</script>"):
        assert text in flat


class _Counter(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_pdf_fetches_nothing_from_outside(html):
    server = HTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        hostile = html.replace(
            "</body>",
            f'<img src="{url}/a.png"><link rel="stylesheet" href="{url}/s.css">'
            f'<img src="file:///etc/hostname"></body>',
        )
        assert render_pdf(hostile).startswith(b"%PDF")
    finally:
        server.shutdown()
    assert _Counter.hits == 0


def test_an_explanation_without_a_result_and_a_selection(item):
    failed = replace(
        item, explanation_id="ex_failed", status="failed", result=None, panes={}, annotations=[]
    )
    html = render_html([item, failed], title="Two", generated_at=WHEN)
    assert "has no RESULT (failed)" in html and "No annotations." in html
    assert html.count('class="explanation"') == 2
    assert render_pdf(html).startswith(b"%PDF")


def test_readings():
    assert deletion_reading(0.21, 0.48) == (
        "Deletion AUC 0.21 vs 0.48 for a random region order (56% less): removing the top "
        "regions first drops the class's probability much faster than chance."
    )
    assert "not clearly better than chance" in insertion_reading(0.47, 0.45)
    assert "does worse than chance" in insertion_reading(0.25, 0.45)
    assert "no random-order reference" in deletion_reading(0.2, None)
    assert "not the model's top class" in sets_reading("tiger cat", False, [], [])
    assert "stays the top class even with every region" in sets_reading("cat", True, [3], [])
