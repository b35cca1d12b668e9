"""Reports of explanations: ``GET /v1/explanations/{id}/report.html|.pdf`` and
``POST /v1/reports`` (several explanations in one file). Every role may export; every export
is in the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from limner.service.audit import audit_note
from limner.service.core import reports as core
from limner.service.deps import ExplanationDep, SpaceDep, StateDep
from limner.service.review_schemas import ReportCreate

router = APIRouter(tags=["reports"])

#: A report is a document to save, never a page of this site: nothing in it may run or load.
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}, "application/pdf": {}}}
}


def file_response(made: core.Report) -> Response:
    """A report as a download."""
    headers = {**REPORT_HEADERS, "Content-Disposition": f'attachment; filename="{made.filename}"'}
    return Response(made.content, media_type=made.media_type, headers=headers)


@router.get(
    "/v1/explanations/{explanation_id}/report.html", response_class=Response, responses=_FILE
)
async def report_html(
    request: Request, exp: ExplanationDep, space: SpaceDep, state: StateDep
) -> Response:
    """The explanation's report as one self-contained HTML file (images embedded)."""
    made = await run_in_threadpool(core.report, state, space, [exp.id], fmt="html")
    audit_note(request, format="html")
    return file_response(made)


@router.get(
    "/v1/explanations/{explanation_id}/report.pdf", response_class=Response, responses=_FILE
)
async def report_pdf(
    request: Request, exp: ExplanationDep, space: SpaceDep, state: StateDep
) -> Response:
    """The explanation's report as PDF (rendered from the same HTML)."""
    made = await run_in_threadpool(core.report, state, space, [exp.id], fmt="pdf")
    audit_note(request, format="pdf")
    return file_response(made)


@router.post("/v1/reports", response_class=Response, responses=_FILE)
async def create_report(
    request: Request, body: ReportCreate, space: SpaceDep, state: StateDep
) -> Response:
    """One report of several explanations of the space (at most 50), HTML or PDF."""
    audit_note(request, target=",".join(body.explanation_ids)[:200], format=body.format)
    made = await run_in_threadpool(
        core.report, state, space, body.explanation_ids, fmt=body.format, title=body.title
    )
    return file_response(made)
