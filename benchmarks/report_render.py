"""Time of a report of one explanation: its HTML, and the PDF rendered from that HTML.

Each photo is explained once by the built-in model (default settings, its top class), outside
the timing; then the report of that one explanation (the photo, its five panes, the region
table, faithfulness, two annotations) is rendered ``--runs`` times as HTML and as PDF, and the
median of each is printed (for the PDF also its CPU time, which other work on a shared machine
disturbs less than the wall time) with the sizes and the page count. The target is under 2 s
for both on 2 CPU cores.

    .venv/bin/python benchmarks/report_render.py [--photos chelsea astronaut] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import statistics
import time
from datetime import UTC, datetime

from PIL import Image

import limner
from limner.report import ReportAnnotation, ReportExplanation, render_html, render_pdf
from limner.samples import sample_photo


def report_item(model: limner.Model, photo: str) -> ReportExplanation:
    """A report item of a real explanation of one bundled photo."""
    exp = limner.explain(sample_photo(photo), model, seed=0)
    top = exp.classes[0]
    image = io.BytesIO()
    Image.fromarray(exp.image).save(image, format="PNG")
    now = datetime.now(UTC)
    return ReportExplanation(
        explanation_id=f"bench-{photo}",
        status="done",
        method=exp.method,
        result=exp.to_dict(),
        scoring_id=f"tx-{photo}",
        label=top.label,
        probability=top.probability,
        deployment="efficientnet-lite0",
        artifact_sha256=hashlib.sha256(photo.encode()).hexdigest(),
        image=image.getvalue(),
        panes={c: {k: exp.png(c, k) for k in exp.pane_kinds} for c in exp.explained_classes},
        requested_by="benchmark",
        requested_role="viewer",
        requested_at=now,
        source=f"{photo}.png",
        annotations=[
            ReportAnnotation("benchmark", "viewer", "accepted", "the ears carry it", now),
            ReportAnnotation("benchmark", "viewer", None, "a second note", now),
        ],
    )


def pages(pdf: bytes) -> str:
    """The PDF's page count (with pypdf, when installed)."""
    try:
        from pypdf import PdfReader
    except ImportError:
        return "?"
    return str(len(PdfReader(io.BytesIO(pdf)).pages))


def main() -> None:
    """Render each photo's report ``--runs`` times and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=["chelsea", "astronaut"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = limner.load_model("efficientnet-lite0", device="cpu")
    render_pdf(render_html([], title="warm-up", generated_at=datetime.now(UTC)))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print("| photo | size | HTML s | PDF s | PDF CPU s | HTML MB | PDF MB | pages | runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for photo in args.photos:
        item = report_item(model, photo)
        html_s, pdf_s, pdf_cpu = [], [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            html = render_html([item], title=f"Report of {photo}", generated_at=datetime.now(UTC))
            mid, cpu = time.perf_counter(), time.process_time()
            pdf = render_pdf(html)
            html_s.append(mid - start)
            pdf_s.append(time.perf_counter() - mid)
            pdf_cpu.append(time.process_time() - cpu)
        result = item.result or {}
        print(
            f"| {photo} | {result.get('width')}×{result.get('height')} "
            f"| {statistics.median(html_s):.3f} | {statistics.median(pdf_s):.3f} "
            f"| {statistics.median(pdf_cpu):.3f} "
            f"| {len(html) / 1e6:.2f} | {len(pdf) / 1e6:.2f} | {pages(pdf)} "
            f"| {args.runs} |"
        )


if __name__ == "__main__":
    main()
