"""``/v1/explanations``: request explanations, follow them, fetch their panes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from limner.errors import NotFoundError
from limner.imaging.views import ViewSettings
from limner.service.audit import audit_note
from limner.service.core import explanations as core
from limner.service.core import find, vertex_views
from limner.service.deps import ExplanationDep, SpaceDep, StateDep, load_transaction
from limner.service.query import ExplanationFilterDep, KnownQuery
from limner.service.schemas import (
    ExplanationBatch,
    ExplanationBatchQueued,
    ExplanationCreate,
    ExplanationList,
    ExplanationQueued,
    ExplanationRead,
    NotQueued,
)

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


@router.post("/batch", status_code=202, response_model=ExplanationBatchQueued)
def explain_many(
    request: Request, body: ExplanationBatch, space: SpaceDep, state: StateDep
) -> ExplanationBatchQueued:
    """Queue an explanation of every transaction a filter selects (the newest ``limit``),
    until the space's jobs in flight reach their limit; say which were queued, and why the
    others were not."""
    flt = body.filter.model_dump(mode="json", exclude_none=True)
    audit_note(request, filter=flt)
    out = core.explain_many(state, space, body.filter, body.settings, body.limit)
    audit_note(
        request,
        queued=len(out.queued),
        not_queued=out.not_queued,
        explanation_ids=[job.id for job, _ in out.queued],
    )
    return ExplanationBatchQueued(
        matched=out.matched,
        queued=[
            ExplanationQueued(
                id=job.id, explanation_id=job.id, scoring_id=tx.scoring_id, status="queued"
            )
            for job, tx in out.queued
        ],
        not_queued=out.not_queued,
        reasons=[
            NotQueued(code=code, message=message, count=count)
            for (code, message), count in out.reasons.items()
        ],
    )


@router.get("", response_model=ExplanationList, dependencies=[KnownQuery])
def list_explanations(
    request: Request,
    space: SpaceDep,
    state: StateDep,
    flt: ExplanationFilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ExplanationList:
    """The space's explanations that the filters select, newest first."""
    rows, total = find.find_explanations(state, space, flt, limit=limit, offset=offset)
    return ExplanationList(
        explanations=find.explanation_views(state, rows, _base(request)),
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/export.jsonl",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
    dependencies=[KnownQuery],
)
def export_explanations(
    request: Request,
    space: SpaceDep,
    state: StateDep,
    flt: ExplanationFilterDep,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """The explanations that the filters select, newest first, one JSON object per line (as
    ``GET /v1/explanations/{id}`` shows it, with its RESULT); each is marked exported."""
    ids = list(find.matching_explanation_ids(state, space, flt))
    ids = ids[offset : None if limit is None else offset + limit]
    find.mark_exported(state.db, ids)
    shown = flt.model_dump(mode="json", by_alias=True, exclude_none=True)
    audit_note(request, count=len(ids), filter=shown)
    return StreamingResponse(
        find.export_lines(state, ids, _base(request)),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": 'attachment; filename="explanations.jsonl"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/{explanation_id}", response_model=ExplanationRead)
def read_explanation(request: Request, exp: ExplanationDep, state: StateDep) -> ExplanationRead:
    """Status, progress, error and (once finished) the RESULT."""
    return find.explanation_views(state, [exp], _base(request))[0]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get(
    "/{explanation_id}/images/{class_index}/view.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    dependencies=[KnownQuery],
)
def explanation_view(
    exp: ExplanationDep,
    state: StateDep,
    class_index: int,
    type: Annotated[str | None, Query(description="PIXELS or OUTLINES")] = None,
    polarity: Annotated[str | None, Query(description="positive, negative or both")] = None,
    clip_percent_upperbound: Annotated[float | None, Query(ge=0, le=100)] = None,
    clip_percent_lowerbound: Annotated[float | None, Query(ge=0, le=100)] = None,
    color_map: Annotated[
        str | None, Query(description="PINK_GREEN, VIRIDIS, RED, GREEN, RED_GREEN or PiYG")
    ] = None,
    overlay_type: Annotated[
        str | None, Query(description="NONE, ORIGINAL, GRAYSCALE or MASK_BLACK")
    ] = None,
) -> Response:
    """A Vertex-style view of an explained class (docs/vertex.md), drawn from the stored image,
    region map or pixel map and RESULT without recomputing; settings left out are the
    subscription's default view, else the method's."""
    given = {
        "type": type,
        "polarity": polarity,
        "clip_percent_upperbound": clip_percent_upperbound,
        "clip_percent_lowerbound": clip_percent_lowerbound,
        "color_map": color_map,
        "overlay_type": overlay_type,
    }
    settings = ViewSettings.from_dict(given, vertex_views.base_settings(state, exp))
    png = vertex_views.render_stored_view(state, exp, class_index, settings)
    # a view named in full is the same image for good; one that leans on the subscription's
    # default is checked again each time (the default may change)
    complete = all(v is not None for v in given.values())
    cache = "private, max-age=86400" if complete else "private, no-cache"
    return Response(png, media_type="image/png", headers={"Cache-Control": cache})


@router.get(
    "/{explanation_id}/images/{class_index}/{kind}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def explanation_pane(
    exp: ExplanationDep,
    state: StateDep,
    class_index: int,
    kind: Literal["positive", "negative", "heatmap", "regions", "saliency", "labels"],
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
