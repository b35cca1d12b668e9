"""Annotations and reports of explanations, as a reviewer uses them: a viewer annotates and
exports, the PDF carries the region table, the verdict, the reviewer's key name and the
artifact's SHA-256; every export is audited, exported or annotated explanations survive a
deletion of their deployment, and user text in a report is escaped."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from svc_helpers import FAST, Running

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from sec_helpers import TINY_META, tiny_onnx

from limner.client import APIClient
from limner.imaging import encode_png
from limner.store import Database, create_key
from limner.store.audit import AuditQuery, query, verify

pypdf = pytest.importorskip("pypdf", reason="needs the dev extra (pypdf)")


@dataclass
class Ctx:
    svc: Running
    tenant: APIClient
    viewer: APIClient
    viewer_http: httpx.Client
    model_sha256: str
    dep_id: str
    explanation_id: str
    space_id: str


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 1
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.fixture(scope="module")
def ctx(shared: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    model = tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")
    db = Database(shared.settings.resolved_database_url())
    tenant_key = create_key(db, "review", role="tenant", name="Alex (ML)")
    viewer_key = create_key(db, "review", role="viewer", name="Dana (model risk)")
    space = __import__("limner.store.keys", fromlist=["space_for_key"]).space_for_key(
        db, viewer_key
    )
    db.close()
    tenant = APIClient(shared.url, api_key=tenant_key)
    dep = tenant.deployments.create(name="tiny", file=model, metadata=TINY_META)
    sub = tenant.subscriptions.create(deployment_id=dep.id)
    sub.enable_explainability(**FAST)
    rng = np.random.default_rng(0)
    image = encode_png(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    sid = str(tenant.score(dep, image).scoring_id)
    viewer = APIClient(shared.url, api_key=viewer_key)
    exp = viewer.explanations.create(sid).wait(120)
    http = httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {viewer_key}"}, timeout=120
    )
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    yield Ctx(shared, tenant, viewer, http, digest, dep.id, exp.id, space.id)
    for c in (tenant, viewer, http):
        c.close()


def test_a_viewer_annotates_and_the_pdf_says_everything_a_reviewer_needs(ctx: Ctx) -> None:
    exp = ctx.viewer.explanations.get(ctx.explanation_id)
    made = exp.annotate("Background drives the score; follow up with the owner.",
                        verdict="needs-follow-up")  # fmt: skip
    assert made["key_name"] == "Dana (model risk)" and made["role"] == "viewer"
    assert [a["verdict"] for a in exp.annotations()] == ["needs-follow-up"]
    pdf = ctx.viewer_http.get(f"/v1/explanations/{ctx.explanation_id}/report.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.content)
    flat = " ".join(text.split())
    assert "needs-follow-up" in flat and "Dana (model risk)" in flat
    assert ctx.model_sha256 in flat.replace(" ", "") or ctx.model_sha256[:16] in flat
    result = exp.refresh().result
    assert result is not None
    top = result["explanations"][0]["regions"][0]
    assert f"{top['weight']:+.4f}" in flat or f"{top['weight']:.4f}" in flat
    for field in ("random", "Deletion"):
        assert field.lower() in flat.lower()


def test_html_report_is_self_contained_and_escapes_user_text(ctx: Ctx, tmp_path: Path) -> None:
    exp = ctx.viewer.explanations.get(ctx.explanation_id)
    exp.annotate('<script>alert("x")</script><img src=http://example.invalid/x>')
    path = exp.report(tmp_path / "r.html", format="html")
    html = path.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "http://example.invalid" not in html.replace("&#34;", '"').split("&lt;img")[0]
    assert 'src="http' not in html and "src='http" not in html
    got = ctx.viewer_http.get(f"/v1/explanations/{ctx.explanation_id}/report.html")
    assert "sandbox" in got.headers["content-security-policy"]
    assert got.headers["content-disposition"].startswith("attachment")


def test_a_report_of_several_and_the_cli(ctx: Ctx, tmp_path: Path) -> None:
    second = ctx.viewer.explanations.create(
        ctx.viewer.explanations.get(ctx.explanation_id).scoring_id, **FAST
    ).wait(120)
    path = ctx.viewer.reports.save([ctx.explanation_id, second.id], tmp_path / "both.pdf")
    text = pdf_text(path.read_bytes())
    assert ctx.explanation_id[:12] in text and second.id[:12] in text
    out = tmp_path / "cli.html"
    proc = subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "report", second.id, "--out", str(out),
         "--url", ctx.svc.url],
        capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ,
             "LIMNER_API_KEY": ctx.viewer_http.headers["authorization"].split()[1]},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().lstrip().lower().startswith("<!doctype html")


def test_reports_and_annotations_stay_in_their_space(ctx: Ctx) -> None:
    other = ctx.svc.new_key("elsewhere")
    http = httpx.Client(base_url=ctx.svc.url, headers={"Authorization": f"Bearer {other}"})
    eid = ctx.explanation_id
    assert http.get(f"/v1/explanations/{eid}/report.pdf").status_code == 404
    assert http.get(f"/v1/explanations/{eid}/annotations").status_code == 404
    assert http.post(f"/v1/explanations/{eid}/annotations", json={"note": "x"}).status_code == 404
    assert http.post("/v1/reports", json={"explanation_ids": [eid]}).status_code == 404
    http.close()


@pytest.mark.parametrize(
    "body",
    [{}, {"note": "  "}, {"verdict": "fine"}, {"note": "x" * 10_001}, {"note": "x", "extra": 1}],
)
def test_bad_annotations_are_422(ctx: Ctx, body: dict) -> None:
    got = ctx.viewer_http.post(f"/v1/explanations/{ctx.explanation_id}/annotations", json=body)
    assert got.status_code == 422, got.text


def test_exports_and_annotations_are_audited_and_keep_the_deployment(ctx: Ctx) -> None:
    db = Database(ctx.svc.settings.resolved_database_url())
    try:
        rows, _ = query(db, ctx.space_id, AuditQuery(action="explanation.export"))
        assert rows and {r.key_name for r in rows} >= {"Dana (model risk)"}
        notes, _ = query(db, ctx.space_id, AuditQuery(action="annotation.create"))
        assert notes and all(r.target == ctx.explanation_id for r in notes)
        # the tenant deletes the deployment: it is retired, the reviewed history stays
        ctx.tenant.deployments.delete(ctx.dep_id)
        kept = ctx.viewer_http.get(f"/v1/explanations/{ctx.explanation_id}")
        assert kept.status_code == 200 and kept.json()["status"] == "finished"
        assert ctx.viewer_http.get(f"/v1/explanations/{ctx.explanation_id}/report.pdf").is_success
        retired, _ = query(db, ctx.space_id, AuditQuery(action="deployment.retire"))
        assert [r.target for r in retired] == [ctx.dep_id]
        assert verify(db, ctx.space_id).ok
    finally:
        db.close()


def test_a_report_of_too_many_or_no_explanations_is_422(ctx: Ctx) -> None:
    for ids in ([], [ctx.explanation_id] * 51):
        got = ctx.viewer_http.post("/v1/reports", json={"explanation_ids": ids})
        assert got.status_code == 422, got.text
    bad = ctx.viewer_http.post(
        "/v1/reports", json={"explanation_ids": [ctx.explanation_id], "format": "docx"}
    )
    assert bad.status_code == 422
