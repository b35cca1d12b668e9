"""The Open Inference binary tensor extension: a JSON header followed by raw tensor bytes.

A body in this form starts with the JSON request or response, whose byte length is given by the
HTTP header ``Inference-Header-Content-Length``; each input or output whose ``parameters`` carry
``binary_data_size`` has that many raw bytes (row-major, little-endian) after the JSON, in the
order the tensors are listed. Tensors without ``binary_data_size`` keep their JSON ``data``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from limner.errors import BadRequestError
from limner.protocol import DATATYPES

#: The HTTP header that gives the JSON part's length in bytes.
HEADER_LENGTH = "Inference-Header-Content-Length"
#: The server-metadata extension name of this encoding.
EXTENSION = "binary_tensor_data"

_DATATYPE_OF = {v: k for k, v in DATATYPES.items()}


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference datatype of a numeric array."""
    try:
        return _DATATYPE_OF[np.dtype(array.dtype)]
    except KeyError as exc:
        raise BadRequestError(f"dtype {array.dtype} has no Open Inference datatype") from exc


def pack(header: dict[str, Any], key: str, tensors: list[np.ndarray]) -> tuple[bytes, int]:
    """The body for ``header`` whose ``header[key]`` entries get ``tensors`` as raw bytes.

    Each entry of ``header[key]`` (the ``inputs`` of a request, the ``outputs`` of a response)
    gets ``shape``, ``datatype`` and ``parameters.binary_data_size`` from its tensor. Returns the
    body and the JSON length to send as :data:`HEADER_LENGTH`.
    """
    raw: list[bytes] = []
    for entry, array in zip(header[key], tensors, strict=True):
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        blob = data.tobytes()
        entry["shape"] = list(array.shape)
        entry["datatype"] = datatype_of(array)
        entry.pop("data", None)
        entry["parameters"] = {**(entry.get("parameters") or {}), "binary_data_size": len(blob)}
        raw.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([head, *raw]), len(head)


def unpack(
    body: bytes, json_length: int, key: str
) -> tuple[dict[str, Any], list[np.ndarray | None]]:
    """Split a binary body into its JSON header and, per entry of ``header[key]``, its array
    (``None`` for an entry whose data stayed in the JSON)."""
    if json_length < 0 or json_length > len(body):
        raise BadRequestError(f"{HEADER_LENGTH} {json_length} does not fit a {len(body)}-byte body")
    try:
        header = json.loads(body[:json_length])
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the JSON part of a binary body is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or not isinstance(header.get(key), list):
        raise BadRequestError(f"the JSON part of a binary body has no {key!r} list")
    arrays: list[np.ndarray | None] = []
    offset = json_length
    for entry in header[key]:
        size = ((entry or {}).get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays.append(None)
            continue
        arrays.append(_array(entry, body, offset, int(size)))
        offset += int(size)
    if offset != len(body):
        raise BadRequestError(f"the binary body has {len(body) - offset} bytes nobody claims")
    return header, arrays


def _array(entry: dict[str, Any], body: bytes, offset: int, size: int) -> np.ndarray:
    name, datatype = entry.get("name"), entry.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequestError(f"tensor {name!r}: binary datatype {datatype!r} is not numeric")
    shape = [int(d) for d in entry.get("shape") or []]
    dtype = DATATYPES[datatype].newbyteorder("<")
    count = int(np.prod(shape)) if shape else 1
    if size < 0 or offset + size > len(body) or count * dtype.itemsize != size:
        raise BadRequestError(
            f"tensor {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"binary_data_size says {size}"
        )
    flat = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape).astype(DATATYPES[datatype], copy=False)
