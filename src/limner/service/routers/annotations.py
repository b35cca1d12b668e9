"""``/v1/explanations/{id}/annotations``: reviewers' notes and verdicts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from limner.service.audit import audit_note
from limner.service.core import annotations as core
from limner.service.deps import ExplanationDep, SpaceDep, StateDep
from limner.service.review_schemas import AnnotationCreate, AnnotationList, AnnotationRead
from limner.store.tables import Annotation

router = APIRouter(prefix="/v1/explanations", tags=["annotations"])


def annotation_view(row: Annotation) -> AnnotationRead:
    """An annotation as JSON."""
    return AnnotationRead(
        id=row.id,
        explanation_id=row.explanation_id,
        note=row.note,
        verdict=row.verdict,  # type: ignore[arg-type]
        key_id=row.key_id,
        key_name=row.key_name,
        role=row.role,
        created_at=row.created_at,
    )


@router.post("/{explanation_id}/annotations", status_code=201, response_model=AnnotationRead)
def create_annotation(
    request: Request,
    body: AnnotationCreate,
    exp: ExplanationDep,
    space: SpaceDep,
    state: StateDep,
) -> AnnotationRead:
    """Annotate an explanation with a note and/or a verdict (every role may; audited)."""
    row = core.annotate(state, space, exp, note=body.note, verdict=body.verdict)
    audit_note(request, target=exp.id, annotation_id=row.id, verdict=row.verdict)
    return annotation_view(row)


@router.get("/{explanation_id}/annotations", response_model=AnnotationList)
def list_annotations(exp: ExplanationDep, state: StateDep) -> AnnotationList:
    """The explanation's annotations, oldest first."""
    return AnnotationList(
        annotations=[annotation_view(a) for a in core.annotations_of(state, exp.id)]
    )
