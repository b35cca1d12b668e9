"""``/v1/deployments``: deploy, list, read and remove models."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from limner.errors import InvalidInputError, UnsupportedMediaError
from limner.service.bodies import media_type, parse, read_json
from limner.service.core import deployments as core
from limner.service.core.views import deployment_view
from limner.service.deps import DeploymentDep, SpaceDep, StateDep
from limner.service.schemas import DeploymentCreate, DeploymentList, DeploymentRead

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])

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
        form = await request.form(max_part_size=8 * 1024 * 1024)
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
        body = parse(DeploymentCreate, await read_json(request))
        dep = await core.create_from_spec(
            state, space, body.name, body.model, hints=body.hints(), headers=body.headers
        )
    else:
        raise UnsupportedMediaError(f"cannot read {kind!r}; send JSON or multipart/form-data")
    return deployment_view(dep)


async def _metadata(part: Any) -> dict[str, Any] | None:
    if part is None:
        return None
    raw = await part.read() if isinstance(part, UploadFile) else str(part)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
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
def delete_deployment(dep: DeploymentDep, state: StateDep) -> Response:
    """Remove a deployment, its subscription, transactions and explanations."""
    core.delete_deployment(state, dep)
    return Response(status_code=204)
