"""The explainer's one way out: a model that scores through the configured predictor.

Over HTTP the model's client reaches the predictor's URL and nothing else
(:class:`PredictorOnlyTransport`, on limner's URL guard); over gRPC the channel is opened to
the configured ``HOST:PORT`` only. No request can change either.
"""

from __future__ import annotations

import threading

import httpx

from limner.errors import LimnerError, ModelUnavailableError
from limner.kserve.config import ExplainerConfig
from limner.models import Model
from limner.models.remote import RemoteModel
from limner.models.remote_grpc import GrpcRemoteModel
from limner.net import GuardedTransport, UrlNotAllowedError, UrlPolicy


class PredictorOnlyTransport(GuardedTransport):
    """limner's guarded transport that refuses, before connecting, every URL its policy does
    not list (the guard alone would also let public addresses through)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if not self.policy.lists(url):
            raise UrlNotAllowedError(f"{url}: this explainer reaches its predictor only")
        return super().handle_request(request)


def predictor_client(config: ExplainerConfig) -> httpx.Client:
    """An HTTP client that reaches the predictor's ``/v2`` routes and nothing else."""
    policy = UrlPolicy(prefixes=(f"{config.predictor_base()}/v2",))
    return httpx.Client(
        transport=PredictorOnlyTransport(policy),
        timeout=config.timeout,
        follow_redirects=False,
        trust_env=False,
    )


class Predictor:
    """The model behind the predictor, connected on first use (the predictor may start after
    the explainer) and kept; ``model()`` retries the connection until it succeeds."""

    def __init__(self, config: ExplainerConfig) -> None:
        self.config = config
        self._model: Model | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        """Whether the predictor has been reached and its model described."""
        return self._model is not None

    def model(self) -> Model:
        """The connected model; :class:`ModelUnavailableError` while the predictor cannot be
        reached or described."""
        with self._lock:
            if self._model is None:
                self._model = self._connect()
            return self._model

    def try_connect(self) -> bool:
        """Whether the model is ready, connecting if it is not and no other thread is
        connecting already (a probe never waits on another probe's connection)."""
        if self._model is not None:
            return True
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._model is None:
                self._model = self._connect()
        except LimnerError:
            return False
        finally:
            self._lock.release()
        return True

    def _connect(self) -> Model:
        config = self.config
        url = config.predictor_url()
        try:
            if config.protocol == "grpc-v2":
                model: Model = GrpcRemoteModel(
                    url, hints=config.hints, headers=config.headers, timeout=config.timeout
                )
            else:
                # the predictor is the operator's own: its error messages are shown
                model = RemoteModel(
                    url,
                    hints=config.hints,
                    headers=config.headers,
                    client=predictor_client(config),
                    timeout=config.timeout,
                    quote_errors=True,
                )
        except LimnerError as exc:
            self.last_error = exc.message
            raise ModelUnavailableError(f"the predictor is not ready: {exc.message}") from exc
        self.last_error = None
        return model

    def close(self) -> None:
        """Close the model's connection."""
        with self._lock:
            if self._model is not None:
                self._model.close()
                self._model = None
