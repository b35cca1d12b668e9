"""The API key, checked before a request body is read; failed keys slowed down per client.

FastAPI runs its dependencies after it has parsed ``Form``/``File`` bodies, so a key check in a
dependency alone would let anyone without a key make the server read (and spool) a whole
upload first. :class:`KeyGuardMiddleware` sits in front of the body: for every keyed path it
reads ``Authorization: Bearer`` from the headers, answers 401 without touching the body when the
key is missing or unknown, and hands the key's space on to the app in the ASGI scope (where
:func:`limner.service.deps.current_space` takes it from).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque

from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from limner.errors import AuthenticationError, LimnerError, RateLimitError
from limner.service.errors import error_response
from limner.store import Database, SpaceRef, space_for_key

#: Where the ASGI scope carries the space of a checked key.
SCOPE_SPACE = "limner.space"

#: Path prefixes that need a key (``/v1``, ``/v2``, the keyed metrics and login links).
KEYED_PREFIXES = ("/v1", "/v2", "/metrics", "/ui/login-links")

#: Client addresses whose failures are remembered at once (the oldest are forgotten first).
_MAX_CLIENTS = 100_000


def needs_key(path: str) -> bool:
    """Whether ``path`` is behind an API key."""
    return any(path == p or path.startswith(p + "/") for p in KEYED_PREFIXES)


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header value, or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class FailedKeyLimiter:
    """A sliding window of failed keys per client address, in this process's memory.

    After ``max_failures`` failures within ``window`` seconds, :meth:`retry_after` tells the
    client how long to wait; successes neither count nor reset the window. Each replica counts
    on its own.
    """

    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds ``client`` must wait before its keys are checked again; None if not blocked."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self.max_failures:
                return None
            oldest_that_blocks = times[len(times) - self.max_failures]
            return max(1, math.ceil(oldest_that_blocks + self.window - now))

    def fail(self, client: str) -> None:
        """Count a failed key of ``client``."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now) or deque()
            times.append(now)
            while len(times) > self.max_failures:
                times.popleft()
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > _MAX_CLIENTS:
                self._failures.popitem(last=False)

    def check(self, client: str) -> None:
        """Raise :class:`RateLimitError` while ``client`` is blocked."""
        wait = self.retry_after(client)
        if wait is not None:
            raise RateLimitError(
                f"too many failed API keys from this address; try again in {wait} s",
                retry_after=wait,
            )


def client_address(scope: Scope) -> str:
    """The client's address as the server sees it (no proxy headers are trusted)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class KeyGuardMiddleware:
    """Answer 401 (or 429 for a client with too many failed keys) before reading the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            scope[SCOPE_SPACE] = await self._space(scope)
        except LimnerError as exc:
            retry = exc.retry_after if isinstance(exc, RateLimitError) else None
            response = error_response(
                exc.status, exc.code, exc.message, scope["path"], retry_after=retry
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _space(self, scope: Scope) -> SpaceRef:
        state = scope["app"].state.limner
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        client = client_address(scope)
        # the refusals that need no database stay on the event loop: a flood of keyless or
        # blocked requests takes no worker thread
        token = presented_key(header, state.key_limiter, client)
        return await to_thread.run_sync(space_of_key, state.db, token, state.key_limiter, client)


def presented_key(header: str, limiter: FailedKeyLimiter | None = None, client: str = "") -> str:
    """The key of an ``Authorization`` value ``Bearer KEY`` (HTTP header or gRPC metadata).

    With a ``limiter``, a ``client`` that failed too often is refused first
    (:class:`RateLimitError`); a missing key is :class:`AuthenticationError` and does not count
    against the client (nothing was guessed).
    """
    if limiter is not None:
        limiter.check(client)
    token = bearer_token(header)
    if token is None:
        raise AuthenticationError("an API key is needed: send 'Authorization: Bearer KEY'")
    return token


def space_of_key(
    db: Database, token: str, limiter: FailedKeyLimiter | None = None, client: str = ""
) -> SpaceRef:
    """The space of a presented key; an unknown key is :class:`AuthenticationError` and counts
    against ``client`` with a ``limiter``."""
    space = space_for_key(db, token)
    if space is None:
        if limiter is not None:
            limiter.fail(client)
        raise AuthenticationError("the API key is not known")
    return space


def space_of_authorization(
    db: Database, header: str, limiter: FailedKeyLimiter | None = None, client: str = ""
) -> SpaceRef:
    """The one key check of every transport: :func:`presented_key`, then :func:`space_of_key`
    (the HTTP guard runs the two apart, the database lookup off the event loop)."""
    return space_of_key(db, presented_key(header, limiter, client), limiter, client)
