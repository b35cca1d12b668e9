"""The reviewer's part of the explanation page: annotations (a note and a verdict) and the
report downloads. Every role may use them; each one is in the audit trail."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from limner.errors import InvalidInputError
from limner.service.audit import record
from limner.service.core import annotations as annotations_core
from limner.service.core import reports as reports_core
from limner.service.deps import StateDep
from limner.service.guard import client_address
from limner.service.routers.reports import file_response
from limner.service.ui.deps import CsrfSessionDep, SessionDep, find_explanation
from limner.store.tables import Annotation

router = APIRouter(prefix="/ui", include_in_schema=False)


def annotations_view(rows: list[Annotation]) -> dict[str, Any]:
    """The explanation page's review card: the annotations and the standing verdict."""
    return {
        "annotations": rows,
        "verdict": annotations_core.latest_verdict(rows),
        "verdicts": annotations_core.VERDICTS,
    }


@router.post("/explanations/{explanation_id}/annotations")
def annotate(
    request: Request,
    explanation_id: str,
    session: CsrfSessionDep,
    state: StateDep,
    note: str = Form("", max_length=annotations_core.MAX_NOTE),
    verdict: str = Form(""),
) -> RedirectResponse:
    """Add the form's note and verdict to the explanation, then back to its page."""
    exp = find_explanation(state, session, explanation_id)
    client = client_address(request.scope)
    try:
        row = annotations_core.annotate(
            state, session.space, exp, note=note, verdict=verdict or None
        )
    except InvalidInputError as exc:
        record(state.audit, session.space, "annotation.create", "failed", target=exp.id,
               client=client, via="dashboard", status=exc.status)  # fmt: skip
        return RedirectResponse(f"/ui/explanations/{exp.id}?review=invalid#review", status_code=303)
    record(state.audit, session.space, "annotation.create", "ok", target=exp.id, client=client,
           via="dashboard", annotation_id=row.id, verdict=row.verdict)  # fmt: skip
    return RedirectResponse(f"/ui/explanations/{exp.id}?review=saved#review", status_code=303)


@router.get("/explanations/{explanation_id}/report.{fmt}")
async def report(
    request: Request,
    explanation_id: str,
    fmt: Literal["html", "pdf"],
    session: SessionDep,
    state: StateDep,
) -> Response:
    """Download the explanation's report (HTML or PDF)."""
    exp = await run_in_threadpool(find_explanation, state, session, explanation_id)
    made = await run_in_threadpool(reports_core.report, state, session.space, [exp.id], fmt=fmt)
    await run_in_threadpool(
        record, state.audit, session.space, "explanation.export", "ok",
        target=exp.id, client=client_address(request.scope), via="dashboard", format=fmt,
    )  # fmt: skip
    return file_response(made)
