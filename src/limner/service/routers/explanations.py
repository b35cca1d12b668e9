"""``/v1/explanations``: request explanations, follow them, fetch their panes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from limner.errors import NotFoundError
from limner.service.audit import audit_note
from limner.service.core import explanations as core
from limner.service.core.views import explanation_view
from limner.service.deps import ExplanationDep, SpaceDep, StateDep, load_transaction
from limner.service.schemas import (
    ExplanationCreate,
    ExplanationList,
    ExplanationQueued,
    ExplanationRead,
)
from limner.store.lookup import scoring_ids

router = APIRouter(prefix="/v1/explanations", tags=["explanations"])


@router.post("", status_code=202, response_model=ExplanationQueued)
def create_explanation(
    request: Request, body: ExplanationCreate, space: SpaceDep, state: StateDep
) -> ExplanationQueued:
    """Queue an explanation of a transaction (409 while explainability is off)."""
    audit_note(request, target=body.scoring_id)
    tx = load_transaction(body.scoring_id, space, state)
    job = core.request_explanation(state, space, tx, body)
    audit_note(request, target=job.id, scoring_id=tx.scoring_id)
    return ExplanationQueued(
        id=job.id, explanation_id=job.id, scoring_id=tx.scoring_id, status="queued"
    )


@router.get("", response_model=ExplanationList)
def list_explanations(
    request: Request,
    space: SpaceDep,
    state: StateDep,
    scoring_id: str | None = Query(None, max_length=64),
) -> ExplanationList:
    """The space's explanations, of one transaction with ``scoring_id``."""
    base = str(request.base_url).rstrip("/")
    rows = core.list_explanations(state, space, scoring_id)
    sids = scoring_ids(state.db, [e.transaction_id for e in rows])
    return ExplanationList(
        explanations=[explanation_view(e, sids.get(e.transaction_id, ""), base) for e in rows]
    )


@router.get("/{explanation_id}", response_model=ExplanationRead)
def read_explanation(request: Request, exp: ExplanationDep, state: StateDep) -> ExplanationRead:
    """Status, progress, error and (once finished) the RESULT."""
    sid = scoring_ids(state.db, [exp.transaction_id]).get(exp.transaction_id, "")
    return explanation_view(exp, sid, str(request.base_url).rstrip("/"))


@router.get(
    "/{explanation_id}/images/{class_index}/{kind}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def explanation_pane(
    exp: ExplanationDep,
    state: StateDep,
    class_index: int,
    kind: Literal["positive", "negative", "heatmap", "regions", "saliency"],
) -> Response:
    """A rendered pane of an explained class."""
    key = (exp.panes or {}).get(f"{class_index}/{kind}")
    if key is None:
        raise NotFoundError(
            f"explanation {exp.id!r} has no {kind} pane for class {class_index}"
            + ("" if exp.status == "finished" else f" (it is {exp.status})")
        )
    return Response(
        state.blobs.get(key),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=86400"},
    )
