"""One exception tree for everything limner raises.

Every error carries a machine-readable ``code`` and the HTTP ``status`` the service answers
with; the CLI prints ``message`` on one line and exits with code 2 for user errors.
"""

from __future__ import annotations


class LimnerError(Exception):
    """Root of every error limner raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(LimnerError, ValueError):
    """The caller's input is wrong: a bad option, a bad shape, a bad value."""

    code = "invalid_input"
    status = 422


class BadRequestError(LimnerError, ValueError):
    """A request that cannot be read at all (malformed JSON, missing fields)."""

    code = "bad_request"
    status = 400


class ImageDecodeError(InvalidInputError):
    """Bytes that are not a readable image (corrupt, empty, or another kind of file)."""

    code = "invalid_image"
    status = 400


class UnsupportedMediaError(LimnerError):
    """A payload of a media type limner does not take."""

    code = "unsupported_media_type"
    status = 415


class PayloadTooLargeError(LimnerError):
    """A body or a decoded image over the configured limits."""

    code = "payload_too_large"
    status = 413


class ForbiddenError(LimnerError):
    """The caller's key may not do this (a tenant deploying code, a URL that is not allowed)."""

    code = "forbidden"
    status = 403


class NotFoundError(LimnerError, LookupError):
    """A resource that does not exist (or is not visible to the caller)."""

    code = "not_found"
    status = 404


class ConflictError(LimnerError):
    """The request conflicts with the resource's state."""

    code = "conflict"
    status = 409


class AuthenticationError(LimnerError):
    """No API key, or a key that is not known."""

    code = "unauthorized"
    status = 401


class RateLimitError(LimnerError):
    """Too many requests; try again after ``retry_after`` seconds (the ``Retry-After`` header)."""

    code = "too_many_requests"
    status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class ServiceBusyError(LimnerError):
    """The server is doing as much of this work as it allows at once; retry after a while."""

    code = "busy"
    status = 503

    def __init__(self, message: str, *, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelError(LimnerError):
    """A model that cannot be loaded or that fails to score."""

    code = "model_error"
    status = 422


class ModelUnavailableError(ModelError):
    """A model that cannot be reached right now (remote endpoint down)."""

    code = "model_unavailable"
    status = 503


class ModelTimeoutError(ModelUnavailableError):
    """A model call or an explanation that ran past its time limit (the call was abandoned)."""

    code = "model_timeout"
    status = 504


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "ImageDecodeError",
    "InvalidInputError",
    "LimnerError",
    "ModelError",
    "ModelTimeoutError",
    "ModelUnavailableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServiceBusyError",
    "UnsupportedMediaError",
]
