"""``/v1/deployments/{id}/explainers`` and ``/v1/explainers/{id}``: train a deployment's
amortized explainer (from its logged transactions, or uploaded images) and follow the
training."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from limner.errors import InvalidInputError, NotFoundError, UnsupportedMediaError
from limner.imaging import decode_image, header_pixels, resize
from limner.service.audit import audit_note
from limner.service.bodies import media_type, parse, read_json
from limner.service.core import explainers as core
from limner.service.core.scoring import check_request_pixels
from limner.service.core.subscriptions import check_storage_room
from limner.service.deps import DeploymentDep, SpaceDep, StateDep
from limner.service.explainer_schemas import (
    MAX_TRAINING_IMAGES,
    ExplainerCreate,
    ExplainerList,
    ExplainerRead,
)
from limner.settings import Settings
from limner.store.lookup import find_in_space
from limner.store.tables import Deployment, ExplainerJob

router = APIRouter(tags=["explainers"])

#: Largest form field of a training upload.
MAX_FIELD_BYTES = 1024

_TRAIN_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": ExplainerCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["images"],
                    "properties": {
                        "images": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                        **{
                            name: {"type": "string"}
                            for name in ExplainerCreate.model_fields
                            if name != "source"
                        },
                    },
                }
            },
        }
    }
}


@router.post(
    "/v1/deployments/{deployment_id}/explainers",
    status_code=202,
    response_model=ExplainerRead,
    openapi_extra=_TRAIN_BODY,
)
async def train_explainer(
    request: Request, dep: DeploymentDep, space: SpaceDep, state: StateDep
) -> ExplainerRead:
    """Queue a training of the deployment's explainer: JSON trains on its newest logged
    transactions, multipart on the uploaded ``images`` (tenant keys; audited)."""
    kind = media_type(request)
    images = None
    if kind == "multipart/form-data":
        form = await request.form(max_files=MAX_TRAINING_IMAGES, max_part_size=MAX_FIELD_BYTES)
        files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
        fields: dict[str, Any] = {
            k: v for k, v in form.multi_items() if k != "images" and isinstance(v, str)
        }
        body = parse(ExplainerCreate, {**fields, "source": "upload"})
        if not files:
            raise InvalidInputError("the multipart body needs image files named 'images'")
        data = [await f.read() for f in files[: body.limit]]
        images = await run_in_threadpool(_training_images, data, dep, state.settings)
        check_storage_room(state, space.id, images.nbytes)
    elif kind in ("application/json", ""):
        raw = await read_json(request) if kind else {}
        body = parse(ExplainerCreate, raw if raw is not None else {})
    else:
        raise UnsupportedMediaError(f"cannot read {kind!r}; send JSON or multipart/form-data")
    row = await run_in_threadpool(core.request_training, state, space, dep, body, images)
    audit_note(request, target=row.id, deployment_id=dep.id, version=row.version)
    return core.explainer_view(row)


def _training_images(data: list[bytes], dep: Deployment, settings: Settings) -> np.ndarray:
    """The uploaded images, decoded (400 for an unreadable one, 413 for one over the pixel
    limit or for all of them over the request's) and resized to the model's input."""
    inp = dep.model_metadata.get("input") or {}
    w, h = int(inp["width"]), int(inp["height"])
    # read from the headers before anything is decoded: unreadable files (400), and the
    # request's pixels in all (413 over LIMNER_MAX_REQUEST_PIXELS, as scoring requests)
    check_request_pixels([header_pixels(item) for item in data], settings)
    out = np.empty((len(data), h, w, 3), np.uint8)
    for i, item in enumerate(data):
        out[i] = resize(decode_image(item, max_pixels=settings.max_pixels), w, h)
    return out


@router.get("/v1/deployments/{deployment_id}/explainers", response_model=ExplainerList)
def list_explainers(dep: DeploymentDep, state: StateDep) -> ExplainerList:
    """The deployment's explainers, newest version first; ``current`` marks the one method
    ``amortized`` uses."""
    current = core.current_explainer(state, dep)
    return ExplainerList(
        explainers=[core.explainer_view(r, current) for r in core.explainers_of(state, dep)]
    )


@router.get("/v1/explainers/{explainer_id}", response_model=ExplainerRead)
def get_explainer(explainer_id: str, space: SpaceDep, state: StateDep) -> ExplainerRead:
    """One explainer training of the caller's space: status, progress, and what it learned."""
    row = find_in_space(state.db, ExplainerJob, explainer_id, space.id)
    if row is None:
        raise NotFoundError(f"no explainer {explainer_id!r}")
    dep = find_in_space(state.db, Deployment, row.deployment_id, space.id)
    current = core.current_explainer(state, dep) if dep is not None else None
    return core.explainer_view(row, current)
