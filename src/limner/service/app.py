"""The FastAPI application factory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from limner import __version__
from limner.errors import LimnerError
from limner.service.audit import AuditMiddleware
from limner.service.deps import current_space
from limner.service.errors import install_error_handlers
from limner.service.guard import SCOPE_SPACE, KeyGuardMiddleware
from limner.service.limits import BodyLimitMiddleware
from limner.service.metrics import NO_SPACE
from limner.service.routers import annotations as annotation_routes
from limner.service.routers import (
    audit,
    compare,
    deployments,
    explainers,
    explanations,
    inference,
    predictions,
    reports,
    subscriptions,
    system,
    transactions,
)
from limner.service.state import ServiceState
from limner.service.ui import install as install_dashboard
from limner.settings import Settings, get_settings
from limner.store import SpaceRef

if TYPE_CHECKING:
    from limner.service.grpc.server import GrpcServer

#: Routers behind an API key, all scoped to the key's space.
PROTECTED = (
    deployments,
    predictions,
    inference,
    subscriptions,
    transactions,
    explanations,
    explainers,
    audit,
    compare,
    annotation_routes,
    reports,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The limner service: opens the store and starts the job runner when it starts serving."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await run_in_threadpool(ServiceState.open, settings)
        app.state.limner = state
        grpc_server = _start_grpc(state)
        app.state.grpc_port = grpc_server.port if grpc_server is not None else None
        try:
            yield
        finally:
            if grpc_server is not None:
                await run_in_threadpool(grpc_server.stop)
            await run_in_threadpool(state.close)

    app = FastAPI(
        title="limner",
        version=__version__,
        summary="Explanations for image classifiers: deployments, transactions, explanations.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_paths={"/v1/deployments": settings.max_upload_bytes},
    )
    app.add_middleware(AuditMiddleware)  # records once the key is known and the route ran
    app.add_middleware(KeyGuardMiddleware)  # runs before the body limit
    app.middleware("http")(_count_requests)
    for module in PROTECTED:
        app.include_router(module.router, dependencies=[Depends(current_space)])
    install_dashboard(app)
    app.include_router(system.router)
    return app


def _start_grpc(state: ServiceState) -> GrpcServer | None:
    """Start the gRPC service when ``settings.grpc_port`` is set (imported only then)."""
    port = state.settings.grpc_port
    if port is None:
        return None
    try:
        from limner.service.grpc.server import GrpcServer
    except ImportError as exc:
        state.close()
        raise LimnerError(
            f"the gRPC service needs grpcio>=1.81.1 and protobuf>=6.33.5 ({exc})"
        ) from exc
    try:
        return GrpcServer(state, state.settings.grpc_host, port).start()
    except BaseException:
        state.close()
        raise


async def _count_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    state = getattr(request.app.state, "limner", None)
    if state is not None:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        space = request.scope.get(SCOPE_SPACE)
        space_id = space.id if isinstance(space, SpaceRef) else NO_SPACE
        status = str(response.status_code)
        state.metrics.requests.labels(space_id, request.method, route, status).inc()
        state.metrics.latency.labels(space_id, route).observe(time.perf_counter() - started)
    return response
