"""Reading request bodies that come in more than one form (JSON or multipart)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from limner.errors import BadRequestError, InvalidInputError, UnsupportedMediaError
from limner.service.core.scoring import MAX_EXTERNAL_ID, MAX_SOURCE, ImagePayload

M = TypeVar("M", bound=BaseModel)

#: JSON bodies up to this many bytes are parsed on the event loop (quicker than a thread hop).
INLINE_JSON_BYTES = 64 * 1024


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request) -> Any:
    """The JSON body (400 when it is not JSON).

    The body is read whole (bounded by ``LIMNER_MAX_BODY_BYTES``,
    :class:`limner.service.limits.BodyLimitMiddleware`); one over
    :data:`INLINE_JSON_BYTES` is parsed in a worker thread, not on the event loop.
    """
    raw = await request.body()
    if not raw:
        raise BadRequestError("the request has no body; send JSON")
    if len(raw) <= INLINE_JSON_BYTES:
        return _loads(raw)
    return await run_in_threadpool(_loads, raw)


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequestError(f"the body is not valid JSON ({exc})") from exc


def parse(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model`` (422 with the field problems when it does not fit)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        ]
        raise InvalidInputError("; ".join(problems[:5])) from exc


def b64decode(text: Any, what: str) -> bytes:
    """Decode a base64 string (a ``data:`` URL prefix is allowed)."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"{what} is not valid base64") from exc


async def form_files(request: Request, field: str) -> list[bytes]:
    """The contents of every file part called ``field`` of a multipart body."""
    form = await request.form(max_files=1000)
    files = [f for f in form.getlist(field) if isinstance(f, UploadFile)]
    if not files:
        raise InvalidInputError(f"the multipart body has no file part named {field!r}")
    return [await f.read() for f in files]


async def image_payload(request: Request) -> ImagePayload:
    """Images of a predictions request: files (multipart or base64) or a pixel array, with
    the caller's case ids and file names where given.

    Multipart: ``file`` parts (each one's file name is its ``source``), and optionally one
    ``external_id`` and one ``source`` field per ``file`` part, in the same order (an empty
    one: none). JSON ``images``: base64 strings, or objects ``{"image": base64,
    "external_id"?, "source"?}``.
    """
    kind = media_type(request)
    if kind == "multipart/form-data":
        return await _multipart_images(request)
    if kind not in ("application/json", ""):
        raise UnsupportedMediaError(
            f"cannot read {kind!r}; send multipart/form-data with 'file' parts or JSON"
        )
    body = await read_json(request)
    if isinstance(body, dict) and "images" in body:
        return _json_images(body["images"])
    if isinstance(body, dict) and "input_data" in body:
        return ImagePayload(pixels_from_input_data(body["input_data"]))
    raise InvalidInputError(
        "send {'images': [base64, ...]} or {'input_data': [{'values': pixels}]}"
    )


async def _multipart_images(request: Request) -> ImagePayload:
    form = await request.form(max_files=1000)
    parts = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not parts:
        raise InvalidInputError("the multipart body has no file part named 'file'")
    images = [await f.read() for f in parts]
    external_ids = _per_file(form, "external_id", len(parts), MAX_EXTERNAL_ID)
    sources = _per_file(form, "source", len(parts), MAX_SOURCE)
    if sources is None:
        sources = [file_name(f.filename) for f in parts]
    return ImagePayload(images, external_ids, sources)


def file_name(name: str | None) -> str | None:
    """The last part of an uploaded file's name (browsers may send a path), at most
    :data:`MAX_SOURCE` characters; ``None`` for none."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:MAX_SOURCE] or None


def _per_file(form: FormData, field: str, n: int, max_length: int) -> list[str | None] | None:
    """The ``field`` values of a multipart body, one per file part (``None`` if none given)."""
    values = form.getlist(field)
    if not values:
        return None
    if len(values) != n:
        raise InvalidInputError(
            f"give one {field!r} field per 'file' part, in the same order (an empty one for "
            f"none): {n} file(s), {len(values)} {field!r} field(s)"
        )
    out: list[str | None] = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidInputError(f"{field}[{i}] must be a text field, not a file")
        out.append(_checked_text(value or None, f"{field}[{i}]", max_length))
    return out


def _checked_text(value: Any, what: str, max_length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what} must be a non-empty string or null")
    if len(value) > max_length:
        raise InvalidInputError(f"{what} is longer than {max_length} characters")
    return value


def _json_images(images: Any) -> ImagePayload:
    """``images`` of a JSON body: base64 strings or ``{"image", "external_id"?, "source"?}``."""
    if not isinstance(images, list):
        raise InvalidInputError(
            "'images' must be a list of base64 strings or {'image': base64, 'external_id'?, "
            "'source'?} objects"
        )
    data: list[bytes] = []
    external_ids: list[str | None] = []
    sources: list[str | None] = []
    for i, entry in enumerate(images):
        if isinstance(entry, dict):
            extra = set(entry) - {"image", "external_id", "source"}
            if extra:
                raise InvalidInputError(f"images[{i}]: unknown field {sorted(extra)[0]!r}")
            if "image" not in entry:
                raise InvalidInputError(f"images[{i}] has no 'image'")
            data.append(b64decode(entry["image"], f"images[{i}].image"))
            external_ids.append(
                _checked_text(entry.get("external_id"), f"images[{i}].external_id", MAX_EXTERNAL_ID)
            )
            sources.append(_checked_text(entry.get("source"), f"images[{i}].source", MAX_SOURCE))
        else:
            data.append(b64decode(entry, f"images[{i}]"))
            external_ids.append(None)
            sources.append(None)
    return ImagePayload(data, external_ids, sources)


def pixels_from_input_data(input_data: Any) -> list[np.ndarray]:
    """uint8 ``[H,W,3]`` images from ``[{"values": nested pixel lists}]``."""
    if not isinstance(input_data, list) or not input_data:
        raise InvalidInputError("'input_data' must be a non-empty list of {'values': ...}")
    arrays: list[np.ndarray] = []
    for i, entry in enumerate(input_data):
        if not isinstance(entry, dict) or "values" not in entry:
            raise InvalidInputError(f"input_data[{i}] must be an object with 'values'")
        try:
            arr = np.asarray(entry["values"])
        except ValueError as exc:
            raise InvalidInputError(f"input_data[{i}].values is not a regular array") from exc
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise InvalidInputError(
                f"input_data[{i}].values must have shape [H, W, 3] or [N, H, W, 3], "
                f"got {list(arr.shape)}"
            )
        arrays.extend(to_uint8(arr, f"input_data[{i}].values"))
    return arrays


def to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """Pixels as uint8: integers 0..255, or floats 0..1 (scaled) or 0..255."""
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InvalidInputError(f"{what}: pixel values must lie in 0..255")
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise InvalidInputError(f"{what}: pixel values must lie in 0..255 (or 0..1)")
        if arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        return np.round(arr).astype(np.uint8)
    raise InvalidInputError(f"{what}: pixel values must be numbers, got {arr.dtype}")
