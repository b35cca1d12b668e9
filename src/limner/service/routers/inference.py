"""``/v2``: the Open Inference (KServe v2) protocol for the space's deployments."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter

from limner import __version__
from limner.errors import InvalidInputError
from limner.protocol import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadataResponse,
    RequestInput,
    ResponseOutput,
    TensorSpec,
    decode_bytes,
    decode_tensor,
    encode_bytes,
    encode_tensor,
)
from limner.service.core.deployments import find_deployment
from limner.service.core.scoring import ImageItem, decode_files, from_pixels, score
from limner.service.deps import SpaceDep, StateDep
from limner.settings import Settings

router = APIRouter(prefix="/v2", tags=["open inference"])


@router.get("")
def server_metadata() -> dict[str, Any]:
    """Server metadata."""
    return {"name": "limner", "version": __version__, "extensions": []}


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
    meta = dep.model_metadata
    return ModelMetadataResponse(
        name=dep.name,
        versions=["1"],
        platform="limner",
        inputs=[TensorSpec(name="image", datatype="UINT8", shape=[-1, -1, -1, 3])],
        outputs=[
            TensorSpec(name="probability", datatype="FP32", shape=[-1, len(meta["labels"])]),
            TensorSpec(name="prediction", datatype="BYTES", shape=[-1]),
            TensorSpec(name="prediction_classes", datatype="INT64", shape=[-1]),
        ],
        parameters={"limner_model": meta, "deployment_id": dep.id},
    )


@router.get("/models/{name}/ready")
def model_ready(name: str, space: SpaceDep, state: StateDep) -> dict[str, Any]:
    """Whether the model can score."""
    dep = find_deployment(state, space, name)
    return {"name": dep.name, "ready": True}


@router.post("/models/{name}/infer", response_model=InferenceResponse)
def infer(
    name: str, request: InferenceRequest, space: SpaceDep, state: StateDep
) -> InferenceResponse:
    """Score input ``image`` (UINT8 ``[N,H,W,3]`` or BYTES ``[N]`` of encoded files)."""
    dep = find_deployment(state, space, name)
    items = _images(_image_input(request), state.settings)
    log = (request.parameters or {}).get("log", True) is not False
    scores = score(state, dep, items, log=log)
    labels = list(dep.model_metadata["labels"])
    probs = scores.probabilities.astype(np.float32)
    classes = probs.argmax(axis=1).astype(np.int64)
    outputs: list[ResponseOutput] = [
        encode_tensor("probability", probs),
        encode_bytes("prediction", [labels[int(i)] for i in classes]),
        encode_tensor("prediction_classes", classes),
    ]
    if request.outputs:
        wanted = {o.name for o in request.outputs}
        unknown = wanted - {o.name for o in outputs}
        if unknown:
            raise InvalidInputError(
                f"unknown outputs {sorted(unknown)}; this model has probability, prediction, "
                "prediction_classes"
            )
        outputs = [o for o in outputs if o.name in wanted]
    return InferenceResponse(
        model_name=dep.name,
        model_version="1",
        id=request.id,
        outputs=outputs,
        parameters={"scoring_ids": scores.scoring_ids},
    )


def _image_input(request: InferenceRequest) -> RequestInput:
    named = [i for i in request.inputs if i.name == "image"]
    if named:
        return named[0]
    if len(request.inputs) == 1:
        return request.inputs[0]
    raise InvalidInputError("the request needs one input tensor named 'image'")


def _images(tensor: RequestInput, settings: Settings) -> list[ImageItem]:
    if tensor.datatype == "BYTES":
        return decode_files(decode_bytes(tensor), settings)
    if tensor.datatype != "UINT8":
        raise InvalidInputError(
            f"input {tensor.name!r} is {tensor.datatype}; send UINT8 [N, H, W, 3] pixels or "
            "BYTES [N] encoded image files"
        )
    if len(tensor.shape) != 4 or tensor.shape[3] != 3:
        raise InvalidInputError(
            f"input {tensor.name!r} has shape {tensor.shape}; send UINT8 [N, H, W, 3] (RGB)"
        )
    pixels = decode_tensor(tensor)
    return from_pixels(list(pixels), settings)
