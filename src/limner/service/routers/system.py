"""Open routes: health and metrics (the dashboard lives in :mod:`limner.service.ui`)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from limner.service.deps import SpaceDep, StateDep

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz(state: StateDep) -> dict[str, str]:
    """Liveness and database reachability."""
    with state.db.session() as s:
        s.connection().exec_driver_sql("SELECT 1")
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
def metrics(space: SpaceDep, state: StateDep) -> Response:
    """Prometheus metrics of the key's space (every space's with an admin key)."""
    text = state.metrics.render(None if space.is_admin else space.id)
    return Response(text, media_type="text/plain; version=0.0.4")
