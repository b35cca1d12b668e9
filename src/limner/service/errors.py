"""Every error leaves as JSON with its status, never a trace: ``{"error": {"code", "message"}}``
on ``/v1`` and elsewhere, and the Open Inference protocol's ``{"error": "message"}`` on ``/v2``."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from limner.errors import LimnerError

log = logging.getLogger("limner.service")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    503: "unavailable",
}


def is_protocol_path(path: str) -> bool:
    """Whether ``path`` is under ``/v2`` (errors in the Open Inference protocol's shape)."""
    return path == "/v2" or path.startswith("/v2/")


def error_body(path: str, code: str, message: str) -> dict[str, object]:
    """The error body for a request to ``path``."""
    if is_protocol_path(path):
        return {"error": message}
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, path: str = "", *, retry_after: float | None = None
) -> JSONResponse:
    """The JSON error body with ``status`` (in the ``/v2`` shape when ``path`` is there), and
    ``Retry-After`` when given."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(error_body(path, code, message), status_code=status, headers=headers)


def _location(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Map limner errors, validation errors, HTTP errors and anything else to JSON errors."""

    @app.exception_handler(LimnerError)
    async def _limner(request: Request, exc: LimnerError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after", None)
        return error_response(
            exc.status, exc.code, exc.message, request.url.path, retry_after=retry_after
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        for e in exc.errors():
            if e.get("type") == "json_invalid":  # a syntax error, not a wrong value: 400
                where = e.get("ctx", {}).get("error", "")
                message = f"the body is not valid JSON ({where or 'syntax error'})"
                return error_response(400, "bad_request", message, request.url.path)
        problems = [
            f"{_location(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        ]
        message = "; ".join(problems[:5]) + (
            f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        )
        return error_response(422, "invalid_input", message or "invalid request", request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", "internal error; the server log has details", request.url.path
        )
