"""Open Inference (KServe v2) protocol types and tensor codecs.

Shared by the remote model adapter, the service's ``/v2`` routes (HTTP and gRPC) and the client.
Codecs are stateless and mirrored: ``decode_tensor(encode_tensor(name, a)) == a``,
``from_raw(dt, shape, to_raw(dt, a)) == a``, and ``unpack_binary(*pack_binary(m, key, raws))``
gives back ``m`` and ``raws``.

The binary tensor extension: a body is the JSON message followed by the tensors' raw bytes, in
the order of the message's ``inputs`` (or ``outputs``); the JSON part's length travels in the
``Inference-Header-Content-Length`` header and each binary tensor carries
``parameters.binary_data_size`` instead of ``data``. Numbers are little-endian, row-major;
a BYTES element is a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import base64
import json
import math
import struct
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
#: numpy dtype → the protocol's datatype name.
DATATYPE_OF = {v: k for k, v in DATATYPES.items()}

#: The HTTP header with the length of the JSON part of a binary-extension body.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: Datatype → the gRPC ``InferTensorContents`` field of its typed contents (FP16 has none:
#: it travels only as raw bytes).
CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

#: A decoded tensor: an array for numeric datatypes, the elements' bytes for BYTES.
TensorValue = np.ndarray | list[bytes]


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
    data: list[Any] = Field(default_factory=list)
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
    data: list[Any] = Field(default_factory=list)
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
    if dtype not in DATATYPE_OF:
        raise InvalidInputError(f"tensor {name!r}: dtype {dtype} has no Open Inference datatype")
    return ResponseOutput(
        name=name,
        shape=list(array.shape),
        datatype=DATATYPE_OF[dtype],
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
    expected = math.prod(tensor.shape)
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


def to_raw(datatype: str, value: TensorValue) -> bytes:
    """A tensor's raw bytes: little-endian row-major numbers, or length-prefixed BYTES."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + bytes(b) for b in value)
    if datatype not in DATATYPES:
        raise InvalidInputError(f"datatype {datatype!r} has no raw form")
    dtype = DATATYPES[datatype].newbyteorder("<")
    return np.ascontiguousarray(value, dtype=dtype).tobytes()


def from_raw(datatype: str, shape: list[int], raw: bytes, name: str = "tensor") -> TensorValue:
    """Decode raw bytes (mirror of :func:`to_raw`), checking they fill ``shape`` exactly."""
    if any(d < 0 for d in shape):
        raise BadRequestError(f"tensor {name!r}: shape {shape} has a negative dimension")
    count = math.prod(shape)
    if datatype == "BYTES":
        items = _unpack_bytes(raw, name)
        if len(items) != count:
            raise BadRequestError(
                f"tensor {name!r}: shape {shape} needs {count} elements, got {len(items)}"
            )
        return items
    if datatype not in DATATYPES:
        raise BadRequestError(
            f"tensor {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}, BYTES"
        )
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise BadRequestError(
            f"tensor {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).astype(DATATYPES[datatype]).reshape(shape)


def _unpack_bytes(raw: bytes, name: str) -> list[bytes]:
    items: list[bytes] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise BadRequestError(f"tensor {name!r}: BYTES data end inside a length prefix")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise BadRequestError(f"tensor {name!r}: a BYTES element runs past the data")
        items.append(raw[pos : pos + size])
        pos += size
    return items


def decode_value(tensor: RequestInput | ResponseOutput, raw: bytes | None = None) -> TensorValue:
    """A tensor's value, from its raw bytes when it came binary, else from its JSON ``data``."""
    if raw is not None:
        return from_raw(tensor.datatype, tensor.shape, raw, tensor.name)
    if tensor.datatype == "BYTES":
        return decode_bytes(tensor)
    return decode_tensor(tensor)


def pack_binary(
    message: dict[str, Any], key: str, raws: dict[str, bytes]
) -> tuple[bytes, int | None]:
    """A binary-extension body: the JSON ``message`` whose ``message[key]`` tensors named in
    ``raws`` carry ``binary_data_size`` instead of ``data``, then those tensors' bytes.

    Returns the body and the JSON part's length (``None`` and plain JSON when ``raws`` is empty).
    """
    tensors = []
    chunks = []
    for entry in message.get(key) or []:
        raw = raws.get(entry["name"])
        if raw is not None:
            params = {**(entry.get("parameters") or {}), "binary_data_size": len(raw)}
            entry = {k: v for k, v in entry.items() if k != "data"} | {"parameters": params}
            chunks.append(raw)
        tensors.append(entry)
    header = json.dumps(message | {key: tensors}, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def unpack_binary(
    body: bytes, header_length: int | None, key: str
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Mirror of :func:`pack_binary`: the JSON message and the raw bytes of its binary tensors."""
    if header_length is None:
        header_length = len(body)
    if not 0 < header_length <= len(body):
        raise BadRequestError(
            f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes"
        )
    try:
        message = json.loads(body[:header_length])
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequestError("the body is not valid JSON") from exc
    if not isinstance(message, dict):
        raise InvalidInputError("the body must be a JSON object")
    raws: dict[str, bytes] = {}
    pos = header_length
    tensors = message.get(key)
    for entry in tensors if isinstance(tensors, list) else []:
        params = entry.get("parameters") if isinstance(entry, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        if not isinstance(size, int) or size < 0 or pos + size > len(body):
            raise BadRequestError(
                f"tensor {entry.get('name')!r}: binary_data_size {size} runs past the body"
            )
        raws[str(entry.get("name"))] = body[pos : pos + size]
        pos += size
    if pos != len(body):
        raise BadRequestError(f"the body has {len(body) - pos} bytes no tensor claims")
    return message, raws


def to_contents(datatype: str, value: TensorValue) -> tuple[str, list[Any]]:
    """The gRPC typed contents of a tensor: its ``InferTensorContents`` field and values."""
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInputError(f"datatype {datatype!r} has no typed contents; use raw contents")
    if datatype == "BYTES":
        return field, [bytes(b) for b in value]
    return field, np.asarray(value, dtype=DATATYPES[datatype]).reshape(-1).tolist()


def from_contents(datatype: str, shape: list[int], values: list[Any], name: str) -> TensorValue:
    """Mirror of :func:`to_contents`: check the values fit ``datatype`` and fill ``shape``."""
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise BadRequestError(f"tensor {name!r}: datatype {datatype!r} needs raw contents")
    if any(d < 0 for d in shape):
        raise BadRequestError(f"tensor {name!r}: shape {shape} has a negative dimension")
    count = math.prod(shape)
    if len(values) != count:
        raise BadRequestError(
            f"tensor {name!r}: shape {shape} needs {count} values, got {len(values)}"
        )
    if datatype == "BYTES":
        return [bytes(v) for v in values]
    dtype = DATATYPES[datatype]
    if dtype.kind in "iu" and values:
        info = np.iinfo(dtype)
        if min(values) < info.min or max(values) > info.max:
            raise BadRequestError(f"tensor {name!r}: values out of the {datatype} range")
    return np.asarray(values, dtype=dtype).reshape(shape)
