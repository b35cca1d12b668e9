"""The request body limit, enforced on the declared length and on the bytes actually sent."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limner.service.errors import error_body

#: Bodies this much over the limit are not read to the end before answering.
_DRAIN_FACTOR = 4

#: The media types that get a path's upload limit (:class:`BodyLimitMiddleware`).
UPLOAD_MEDIA_TYPES = frozenset({"multipart/form-data"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes its limit (answered as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {_mb(limit)} MB")


class BodyLimitMiddleware:
    """Answer 413 (JSON) to any request whose body exceeds ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything is read; otherwise
    the bytes are counted as the app reads them, and the read that passes the limit raises
    :class:`BodyTooLarge`, so a client that lies about ``Content-Length`` or streams a chunked
    body is stopped at the limit without the body being held here.

    ``upload_paths`` gives paths a larger limit for ``multipart/form-data`` bodies only (file
    uploads, which are spooled to disk as they stream in); any other body sent there (JSON,
    which is read whole and parsed in memory) keeps ``max_bytes``.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, *, upload_paths: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_paths = upload_paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if _media_type(scope) in UPLOAD_MEDIA_TYPES:
            limit = self.upload_paths.get(scope["path"].rstrip("/"), self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._drain(receive, int(declared), limit)
            await self._reject(send, limit, scope["path"])
            return
        total = 0

        async def counted() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    if message.get("more_body"):
                        await self._drain(receive, total, limit)
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)

    async def _drain(self, receive: Receive, size_hint: int, limit: int) -> None:
        # Read what the client sends (up to a bound) so it sees the answer, not a reset.
        if size_hint > limit * _DRAIN_FACTOR:
            return
        read = 0
        while read <= limit * _DRAIN_FACTOR:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, send: Send, limit: int, path: str) -> None:
        message = f"the request body is over the limit of {_mb(limit)} MB"
        body = json.dumps(error_body(path, "payload_too_large", message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _media_type(scope: Scope) -> str:
    """The request's media type, read as the routes read it (:func:`limner.service.bodies.
    media_type`): the first ``Content-Type`` header, lower case, without parameters."""
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


def _mb(limit: int) -> str:
    return f"{limit / (1024 * 1024):g}"
