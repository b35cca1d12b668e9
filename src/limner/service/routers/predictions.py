"""``POST /v1/deployments/{id}/predictions``: scoring for people (files, base64 or pixels)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from limner.service.bodies import image_payload
from limner.service.core.scoring import score
from limner.service.core.views import prediction_view
from limner.service.deps import DeploymentDep, StateDep
from limner.service.schemas import Predictions

router = APIRouter(prefix="/v1/deployments", tags=["predictions"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "external_id": {"type": "array", "items": {"type": "string"}},
                        "source": {"type": "array", "items": {"type": "string"}},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object", "properties": {"images": {"type": "array"}}},
                        {"type": "object", "properties": {"input_data": {"type": "array"}}},
                    ]
                }
            },
        },
    }
}


@router.post("/{deployment_id}/predictions", response_model=Predictions, openapi_extra=_BODY)
async def predict(request: Request, dep: DeploymentDep, state: StateDep) -> Predictions:
    """Score images; each scoring of a subscribed deployment becomes a transaction."""
    payload = await image_payload(request)
    settings = state.settings

    def work() -> Predictions:
        scores = score(state, dep, payload.items(settings))
        labels = list(dep.model_metadata["labels"])
        found: list[list[dict[str, Any]] | None] = [None for _ in scores.scoring_ids]
        if scores.detections is not None:
            found = list(scores.detections)
        rows = zip(scores.probabilities, scores.scoring_ids, found, strict=True)
        return Predictions(
            predictions=[prediction_view(p, labels, sid, boxes) for p, sid, boxes in rows]
        )

    return await run_in_threadpool(work)
