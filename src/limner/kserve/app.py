"""The explainer's FastAPI app: the routes a KServe ``ModelServer`` answers for an explainer,
with KServe's answers and error shapes (``{"error": "..."}``; 400 for invalid input, 404 for
an unknown model, 503 for one not ready, 500 for a failed inference).

Routes (as ``kserve.protocol.rest`` registers them; KServe defines no v2 explain route):

* ``GET /``: ``{"status": "alive"}``
* ``GET /v1/models``: ``{"models": [name]}``
* ``GET /v1/models/{name}``: ``{"name": name, "ready": true}`` (503 until the predictor answers)
* ``POST /v1/models/{name}:explain``: ``{"results": [RESULT, ...]}``, one per instance
* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models``,
  ``/v2/models/{name}``, ``/v2/models/{name}/ready``
* ``GET /v1/models/{name}/panes/{id}/{file}``: a stored pane (``--panes store`` only)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from limner import __version__
from limner.errors import (
    ForbiddenError,
    LimnerError,
    ModelUnavailableError,
    NotFoundError,
    PayloadTooLargeError,
)
from limner.explain import explain
from limner.kserve.config import ExplainerConfig
from limner.kserve.panes import inline_refs, stored_pane, stored_refs
from limner.kserve.payload import parse_body
from limner.kserve.predictor import Predictor

log = logging.getLogger("limner.kserve")
#: A declared body up to this many times the limit is read and dropped before the 413.
DRAIN_FACTOR = 4


class ModelNotFoundError(NotFoundError):
    """A model name the explainer does not serve (KServe's ``ModelNotFound``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Model with name {name} does not exist.")


class ModelNotReadyError(ModelUnavailableError):
    """The predictor cannot be reached yet (KServe's ``ModelNotReady``)."""

    def __init__(self, name: str, detail: str | None = None) -> None:
        text = f"Model with name {name} is not ready."
        super().__init__(f"{text} {detail}" if detail else text)


def kserve_status(exc: LimnerError) -> int:
    """The status KServe would answer: 400 for any invalid input, 500 for a failed inference,
    413, 403, 404 and 503 as they are."""
    if isinstance(exc, (PayloadTooLargeError, ForbiddenError, NotFoundError)):
        return exc.status
    if isinstance(exc, ModelUnavailableError):
        return 503
    if exc.status < 500 and exc.code not in ("model_error",):
        return 400
    return 500


def error(status: int, message: str) -> JSONResponse:
    """A KServe-shaped error answer."""
    return JSONResponse(status_code=status, content={"error": message})


def create_explainer_app(config: ExplainerConfig) -> FastAPI:
    """The explainer app for ``config`` (the predictor is reached on first use)."""
    predictor = Predictor(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        predictor.close()

    app = FastAPI(
        title="limner KServe explainer",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    slots = asyncio.Semaphore(config.concurrency)
    name = config.model_name

    @app.exception_handler(LimnerError)
    async def limner_error(_: Request, exc: LimnerError) -> JSONResponse:
        return error(kserve_status(exc), exc.message)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("explainer error", exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__})")

    def known(model_name: str) -> None:
        if model_name != name:
            raise ModelNotFoundError(model_name)

    async def connected() -> bool:
        return predictor.ready or await run_in_threadpool(predictor.try_connect)

    async def ready_or_503(model_name: str) -> dict[str, Any]:
        known(model_name)
        if not await connected():
            raise ModelNotReadyError(model_name, predictor.last_error)
        return {"name": model_name, "ready": True}

    @app.get("/")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/v1/models")
    async def v1_models() -> dict[str, list[str]]:
        return {"models": [name]}

    @app.get("/v1/models/{model_name}")
    async def v1_model_ready(model_name: str) -> dict[str, Any]:
        return await ready_or_503(model_name)

    @app.post("/v1/models/{model_name}:explain")
    async def v1_explain(model_name: str, request: Request) -> JSONResponse:
        known(model_name)
        body = await read_body(request, config.max_body_bytes)
        parsed = parse_body(body, config)
        try:
            model = await run_in_threadpool(predictor.model)
        except ModelUnavailableError as exc:
            raise ModelNotReadyError(model_name, predictor.last_error) from exc

        def run() -> list[dict[str, Any]]:
            results = []
            for image in parsed.images:
                exp = explain(image, model, max_pixels=config.max_pixels, **parsed.settings)
                if config.panes == "inline":
                    refs = inline_refs(exp)
                elif config.panes == "store":
                    assert config.pane_dir is not None
                    base = f"/v1/models/{name}/panes"
                    refs = stored_refs(exp, config.pane_dir, base)
                else:
                    refs = none_refs
                results.append(exp.to_dict(refs))
            return results

        async with slots:  # the others wait their turn, off the thread pool
            results = await run_in_threadpool(run)
        return JSONResponse({"results": results})

    if config.panes == "store":
        pane_dir = config.pane_dir

        @app.get("/v1/models/{model_name}/panes/{stored}/{file}")
        async def v1_pane(model_name: str, stored: str, file: str) -> FileResponse:
            known(model_name)
            assert pane_dir is not None
            path = stored_pane(pane_dir, stored, file)
            if path is None:
                raise NotFoundError("no such pane")
            return FileResponse(path, media_type="image/png")

    @app.get("/v2")
    async def v2_metadata() -> dict[str, Any]:
        return {"name": "limner-kserve-explainer", "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def v2_ready() -> JSONResponse:
        if not await connected():
            return error(503, "Server is not ready.")
        return JSONResponse({"ready": True})

    @app.get("/v2/models")
    async def v2_models() -> dict[str, list[str]]:
        return {"models": [name]}

    @app.get("/v2/models/{model_name}")
    async def v2_model_metadata(model_name: str) -> dict[str, Any]:
        known(model_name)
        return {
            "name": model_name,
            "versions": None,
            "platform": "limner-explainer",
            "inputs": [],
            "outputs": [],
        }

    @app.get("/v2/models/{model_name}/ready")
    async def v2_model_ready(model_name: str) -> dict[str, Any]:
        return await ready_or_503(model_name)

    return app


def none_refs(class_index: int, kind: str) -> None:
    """No image references (``--panes none``)."""
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (the declared length
    is checked before anything is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        # read (and drop) a body a few times the limit, so the client hears the answer instead
        # of a reset connection; a larger one is cut off
        if int(declared) <= DRAIN_FACTOR * limit:
            async for _ in request.stream():
                pass
        raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes")
    return bytes(body)
