"""The request body limit, enforced on the declared length and on the bytes actually sent."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limner.service.errors import error_body

#: Bodies this much over the limit are not read to the end before answering.
_DRAIN_FACTOR = 4


class BodyLimitMiddleware:
    """Answer 413 (JSON) to any request whose body exceeds ``max_bytes``.

    The body is read here, up to the limit, and replayed to the app, so a client that lies about
    ``Content-Length`` or streams without one is stopped as well.
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
        limit = self.upload_paths.get(scope["path"].rstrip("/"), self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._drain(receive, int(declared), limit)
            await self._reject(send, limit, scope["path"])
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > limit:
                if message.get("more_body"):
                    await self._drain(receive, total, limit)
                await self._reject(send, limit, scope["path"])
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

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
        message = f"the request body is over the limit of {limit / (1024 * 1024):g} MB"
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


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
