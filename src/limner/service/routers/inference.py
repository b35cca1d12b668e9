"""``/v2``: the Open Inference (KServe v2) protocol for the space's deployments.

Bodies are JSON whatever their ``Content-Type``, or the binary tensor extension (the JSON
header's length in ``Inference-Header-Content-Length``, the tensors' bytes after it) both ways.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from limner import __version__
from limner.errors import BadRequestError
from limner.protocol import (
    HEADER_LENGTH,
    InferenceRequest,
    InferenceResponse,
    ModelMetadataResponse,
    RequestInput,
    ResponseOutput,
    decode_value,
    encode_bytes,
    encode_tensor,
    pack_binary,
    to_raw,
    unpack_binary,
)
from limner.service.core import inference as core
from limner.service.core.deployments import find_deployment
from limner.service.deps import SpaceDep, StateDep

router = APIRouter(prefix="/v2", tags=["open inference"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": InferenceRequest.model_json_schema()},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"JSON header of {HEADER_LENGTH} bytes, then binary tensors",
            },
        },
    }
}


@router.get("")
def server_metadata() -> dict[str, Any]:
    """Server metadata, with the protocol extensions limner has."""
    return {"name": "limner", "version": __version__, "extensions": core.EXTENSIONS}


@router.get("/health/ready")
def server_ready() -> dict[str, bool]:
    """The server is ready to score."""
    return {"ready": True}


@router.get("/health/live")
def server_live() -> dict[str, bool]:
    """The server is alive."""
    return {"live": True}


@router.get("/models/{name}", response_model=ModelMetadataResponse)
def model_metadata(name: str, space: SpaceDep, state: StateDep) -> ModelMetadataResponse:
    """The model's tensors; ``parameters.limner_model`` holds its labels and input settings."""
    dep = find_deployment(state, space, name)
    inputs, outputs = core.tensor_specs(dep)
    return ModelMetadataResponse(
        name=dep.name,
        versions=[core.MODEL_VERSION],
        platform="limner",
        inputs=inputs,
        outputs=outputs,
        parameters={"limner_model": dep.model_metadata, "deployment_id": dep.id},
    )


@router.get("/models/{name}/ready")
def model_ready(name: str, space: SpaceDep, state: StateDep) -> dict[str, Any]:
    """Whether the model can score."""
    dep = find_deployment(state, space, name)
    return {"name": dep.name, "ready": True}


@router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    openapi_extra=_BODY,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def infer(name: str, request: Request, space: SpaceDep, state: StateDep) -> Response:
    """Score input ``image`` (UINT8 ``[N,H,W,3]`` or BYTES ``[N]`` of encoded files)."""
    body = await request.body()
    message, raws = unpack_binary(body, _header_length(request), "inputs")
    try:
        req = InferenceRequest.model_validate(message)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    inputs = [_input(t, raws.get(t.name)) for t in req.inputs]
    log = (req.parameters or {}).get("log", True) is not False
    wanted = [o.name for o in req.outputs] if req.outputs else None
    result = await run_in_threadpool(core.infer, state, space, name, inputs, wanted=wanted, log=log)
    binary = _binary_outputs(req, [o.name for o in result.outputs])
    raw = {o.name: to_raw(o.datatype, o.value) for o in result.outputs if o.name in binary}
    response = InferenceResponse(
        model_name=result.model_name,
        model_version=core.MODEL_VERSION,
        id=req.id,
        outputs=[_json_output(o, with_data=o.name not in raw) for o in result.outputs],
        parameters={"scoring_ids": result.scoring_ids},
    )
    content, length = pack_binary(response.model_dump(exclude_none=True), "outputs", raw)
    if length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(length)}
    )


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequestError(f"{HEADER_LENGTH} must be a number of bytes, got {value!r}")
    return int(value)


def _input(tensor: RequestInput, raw: bytes | None) -> core.InputTensor:
    return core.InputTensor(
        tensor.name, tensor.datatype, tensor.shape, lambda: decode_value(tensor, raw)
    )


def _json_output(out: core.OutputTensor, *, with_data: bool) -> ResponseOutput:
    """The output's JSON entry; without data when its bytes follow the JSON header."""
    if not with_data:
        return ResponseOutput(name=out.name, shape=out.shape, datatype=out.datatype)
    if isinstance(out.value, np.ndarray):
        return encode_tensor(out.name, out.value)
    return encode_bytes(out.name, [bytes(b).decode() for b in out.value])  # labels: text


def _binary_outputs(req: InferenceRequest, names: list[str]) -> set[str]:
    """Outputs to send as raw bytes: ``binary_data`` per output, else ``binary_data_output``."""
    every = bool((req.parameters or {}).get("binary_data_output", False))
    chosen = {name for name in names if every}
    for out in req.outputs or []:
        flag = (out.parameters or {}).get("binary_data")
        if flag is True:
            chosen.add(out.name)
        elif flag is False:
            chosen.discard(out.name)
    return chosen & set(names)
