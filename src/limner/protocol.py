"""Open Inference (KServe v2) protocol types and tensor codecs.

Shared by the remote model adapter, the service's ``/v2`` routes and the client. Codecs are
stateless and mirrored: ``decode_tensor(encode_tensor(name, a)) == a``.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from limner.errors import BadRequestError, InvalidInputError

#: Open Inference datatype → numpy dtype.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NUMPY_TO_DATATYPE = {v: k for k, v in DATATYPES.items()}


class TensorSpec(BaseModel):
    """A tensor's name, datatype and shape (-1 for a free dimension)."""

    name: str
    datatype: str
    shape: list[int]


class RequestInput(BaseModel):
    """One input tensor of an inference request."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestOutput(BaseModel):
    """An output the caller asks for."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer`` body."""

    id: str | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None
    parameters: dict[str, Any] | None = None


class ResponseOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferenceResponse(BaseModel):
    """``POST /v2/models/{name}/infer`` answer."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]
    parameters: dict[str, Any] | None = None


class ModelMetadataResponse(BaseModel):
    """``GET /v2/models/{name}`` answer."""

    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str = ""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parameters: dict[str, Any] | None = None


def encode_tensor(name: str, array: np.ndarray) -> ResponseOutput:
    """Encode a numeric array as a row-major Open Inference tensor."""
    dtype = np.dtype(array.dtype)
    if dtype not in _NUMPY_TO_DATATYPE:
        raise InvalidInputError(f"tensor {name!r}: dtype {dtype} has no Open Inference datatype")
    return ResponseOutput(
        name=name,
        shape=list(array.shape),
        datatype=_NUMPY_TO_DATATYPE[dtype],
        data=array.reshape(-1).tolist(),
    )


def encode_bytes(name: str, items: list[bytes] | list[str]) -> ResponseOutput:
    """Encode a list of byte strings (base64 in JSON) or texts as a BYTES tensor."""
    data = [base64.b64encode(i).decode("ascii") if isinstance(i, bytes) else str(i) for i in items]
    return ResponseOutput(name=name, shape=[len(data)], datatype="BYTES", data=data)


def decode_tensor(tensor: RequestInput | ResponseOutput) -> np.ndarray:
    """Decode a numeric Open Inference tensor into an array of its shape and dtype."""
    if tensor.datatype not in DATATYPES:
        raise BadRequestError(
            f"tensor {tensor.name!r}: datatype {tensor.datatype!r} is not numeric; "
            f"use one of {', '.join(DATATYPES)} or BYTES"
        )
    try:
        flat = np.asarray(_flatten(tensor.data), dtype=DATATYPES[tensor.datatype])
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequestError(
            f"tensor {tensor.name!r}: data are not {tensor.datatype} values"
        ) from exc
    expected = int(np.prod(tensor.shape)) if tensor.shape else 1
    if any(d < 0 for d in tensor.shape) or flat.size != expected:
        raise BadRequestError(
            f"tensor {tensor.name!r}: shape {tensor.shape} needs {expected} values, got {flat.size}"
        )
    return flat.reshape(tensor.shape)


def decode_bytes(tensor: RequestInput | ResponseOutput) -> list[bytes]:
    """Decode a BYTES tensor whose elements are base64 strings (or raw lists of ints)."""
    if tensor.datatype != "BYTES":
        raise BadRequestError(f"tensor {tensor.name!r}: expected BYTES, got {tensor.datatype}")
    out: list[bytes] = []
    for item in _flatten(tensor.data):
        if isinstance(item, str):
            try:
                out.append(base64.b64decode(item, validate=True))
            except ValueError as exc:
                raise BadRequestError(
                    f"tensor {tensor.name!r}: an element is not valid base64"
                ) from exc
        elif isinstance(item, bytes):
            out.append(item)
        else:
            raise BadRequestError(f"tensor {tensor.name!r}: BYTES elements must be strings")
    return out


def _flatten(data: list[Any]) -> list[Any]:
    """Flatten nested lists (the protocol allows both flat and nested data)."""
    if data and isinstance(data[0], list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item) if isinstance(item, list) else [item])
        return out
    return data
