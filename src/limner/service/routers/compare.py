"""``/v1/comparisons``: explain one transaction several ways on the same regions, compare."""

from __future__ import annotations

from fastapi import APIRouter, Request

from limner.service.audit import audit_note
from limner.service.comparison_schemas import ComparisonCreate, ComparisonQueued, ComparisonRead
from limner.service.core import compare as core
from limner.service.deps import SpaceDep, StateDep

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"])


@router.post("", status_code=202, response_model=ComparisonQueued)
def create_comparison(
    request: Request, body: ComparisonCreate, space: SpaceDep, state: StateDep
) -> ComparisonQueued:
    """Queue the explanations of a comparison (deployments × methods, one segmentation)."""
    audit_note(request, target=body.scoring_id)
    comparison = core.request_comparison(state, space, body)
    audit_note(
        request,
        target=comparison.id,
        scoring_id=comparison.tx.scoring_id,
        explanations=[r.id for r in comparison.rows],
    )
    return ComparisonQueued(
        id=comparison.id,
        comparison_id=comparison.id,
        scoring_id=comparison.tx.scoring_id,
        status="queued",
        explanations=core.compared_explanations(comparison),
    )


@router.get("/{comparison_id}", response_model=ComparisonRead)
def read_comparison(comparison_id: str, space: SpaceDep, state: StateDep) -> ComparisonRead:
    """Status and explanations; once they have ended, the region table per class, the pairwise
    agreement (Spearman, top-3 overlap) and the disagreements."""
    return core.comparison_view(core.load_comparison(state, space, comparison_id))
