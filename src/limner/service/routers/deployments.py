"""``/v1/deployments``: deploy, list, read and remove models."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from limner.errors import (
    ForbiddenError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
from limner.service.audit import audit_note
from limner.service.bodies import media_type, parse, read_json
from limner.service.core import deployments as core
from limner.service.core import subscriptions
from limner.service.core.views import deployment_view
from limner.service.deps import DeploymentDep, SpaceDep, StateDep
from limner.service.schemas import DeploymentCreate, DeploymentList, DeploymentRead

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])

#: Largest form field of a multipart upload, and largest ``metadata`` part (field or file).
MAX_PART_BYTES = 8 * 1024 * 1024

_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DeploymentCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "file"],
                    "properties": {
                        "name": {"type": "string"},
                        "file": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "limner-model.json"},
                    },
                }
            },
        },
    }
}


@router.post("", status_code=201, response_model=DeploymentRead, openapi_extra=_CREATE_BODY)
async def create_deployment(request: Request, space: SpaceDep, state: StateDep) -> DeploymentRead:
    """Deploy a model spec (JSON) or an uploaded artifact (multipart)."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        form = await request.form(max_part_size=MAX_PART_BYTES)
        name = parse(DeploymentCreate, {"name": form.get("name"), "model": "upload"}).name
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInputError("the multipart body needs a file part named 'file'")
        data = await upload.read()
        metadata = await _metadata(form.get("metadata"))
        dep = await core.create_from_upload(
            state, space, name, upload.filename or "", data, metadata
        )
    elif kind in ("application/json", ""):
        # capped at LIMNER_MAX_BODY_BYTES (only multipart uploads get LIMNER_MAX_UPLOAD_BYTES),
        # parsed and validated off the event loop
        data = await read_json(request)
        body = await run_in_threadpool(parse, DeploymentCreate, data)
        dep = await core.create_from_spec(
            state, space, body.name, body.model, hints=body.hints(), headers=body.headers
        )
    else:
        raise UnsupportedMediaError(f"cannot read {kind!r}; send JSON or multipart/form-data")
    audit_note(request, target=dep.id, name=dep.name, artifact_sha256=dep.artifact_sha256)
    return deployment_view(dep)


async def _metadata(part: Any) -> dict[str, Any] | None:
    """The ``metadata`` part (a field or a file, at most :data:`MAX_PART_BYTES`), parsed off the
    event loop."""
    if part is None:
        return None
    if isinstance(part, UploadFile):
        if (part.size or 0) > MAX_PART_BYTES:
            raise PayloadTooLargeError(
                f"the 'metadata' part is over {MAX_PART_BYTES // (1024 * 1024)} MB"
            )
        raw: bytes | str = await part.read()
    else:
        raw = str(part)
    try:
        data = await run_in_threadpool(json.loads, raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInputError("the 'metadata' part is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInputError("the 'metadata' part must be a JSON object")
    return data


@router.get("", response_model=DeploymentList)
def list_deployments(space: SpaceDep, state: StateDep) -> DeploymentList:
    """The space's deployments."""
    return DeploymentList(
        deployments=[deployment_view(d) for d in core.list_deployments(state, space)]
    )


@router.get("/{deployment_id}", response_model=DeploymentRead)
def read_deployment(dep: DeploymentDep) -> DeploymentRead:
    """One deployment."""
    return deployment_view(dep)


@router.delete("/{deployment_id}", status_code=204)
def delete_deployment(
    request: Request,
    dep: DeploymentDep,
    space: SpaceDep,
    state: StateDep,
    purge: bool = Query(False, description="Erase reviewed history too (an admin key only)."),
) -> Response:
    """Remove a deployment, its subscription, transactions and explanations (and the image and
    pane blobs no other row references).

    When an explanation of it was exported or annotated, the deployment is retired instead:
    its model is unloaded and deleted, its history stays readable. ``?purge=true`` with an
    admin key erases everything anyway (and the audit trail says so).
    """
    if purge and not space.is_admin:
        raise ForbiddenError("erasing reviewed history (purge) needs an admin key")
    if not purge and core.has_reviewed_history(state, dep):
        core.retire_deployment(state, dep)
        audit_note(request, action="deployment.retire")
        return Response(status_code=204)
    subscriptions.delete_deployment_subscription(state, dep.id)
    core.delete_deployment(state, dep)
    if purge:
        audit_note(request, action="deployment.purge")
    return Response(status_code=204)
