"""Reports of explanations for reviewers: one self-contained HTML file (every image embedded)
and a PDF rendered from the same HTML.

    html = render_html([item], title="Review of case 42", generated_at=datetime.now(UTC))
    pdf = render_pdf(html)

Each item is a :class:`ReportExplanation`: the RESULT, the transaction, the deployment, who
asked, the reviewers' annotations and the images, as plain data.
"""

from __future__ import annotations

from limner.report.model import VERDICTS, ReportAnnotation, ReportExplanation
from limner.report.render import render_html, render_pdf

__all__ = ["VERDICTS", "ReportAnnotation", "ReportExplanation", "render_html", "render_pdf"]
