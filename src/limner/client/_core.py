"""The HTTP core every client resource goes through: one httpx client, errors mapped back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from limner import errors
from limner.errors import LimnerError


def _error_classes() -> dict[str, type[LimnerError]]:
    found: dict[str, type[LimnerError]] = {}
    stack: list[type[LimnerError]] = [LimnerError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


_BY_CODE = _error_classes()
_BY_STATUS: dict[int, type[LimnerError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    415: errors.UnsupportedMediaError,
    422: errors.InvalidInputError,
    429: errors.RateLimitError,
    503: errors.ModelUnavailableError,
}


def error_from_response(response: httpx.Response) -> LimnerError:
    """The limner exception an error response stands for."""
    code, message = "", f"the server answered {response.status_code}"
    try:
        body = response.json()["error"]
        if isinstance(body, str):  # the Open Inference shape of /v2: {"error": "message"}
            message = body
        else:
            code, message = str(body.get("code", "")), str(body.get("message", message))
    except (ValueError, KeyError, TypeError, AttributeError):
        if response.text:
            message = f"{message}: {response.text[:200]}"
    cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code, LimnerError)
    exc = cls(message)
    if cls is LimnerError:
        exc.status = response.status_code
    return exc


class Core:
    """Sends requests with the API key and turns error answers into limner exceptions."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise the matching :class:`LimnerError` on an error status."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise LimnerError(f"{method} {path}: the server did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise LimnerError(f"cannot reach limner at {self.base_url} ({exc})") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON answer."""
        return self.request(method, path, **kwargs).json()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


def poll_until_done(
    refresh: Callable[[], str], *, what: str, timeout: float | None, poll: float
) -> str:
    """Call ``refresh`` (which returns a job's status) until the status is ``finished`` or
    ``failed``, backing off from 50 ms to ``poll`` seconds; return that status.

    Raises:
        TimeoutError: not done within ``timeout`` seconds (``what`` names the job).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = min(poll, 0.05)
    while True:
        status = refresh()
        if status in ("finished", "failed"):
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} is still {status} after {timeout:g} s")
        time.sleep(delay)
        delay = min(poll, delay * 2)
