"""Open routes: health, metrics, and the dashboard's entry page."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from limner.service.deps import StateDep

router = APIRouter(tags=["system"])

_UI = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>limner</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}
code{background:#f3f3f3;padding:0 .3em}</style></head>
<body><h1>limner</h1>
<p>The service is running. The API is described at <a href="/docs">/docs</a>
(<a href="/openapi.json">OpenAPI</a>); every <code>/v1</code> and <code>/v2</code> route takes
<code>Authorization: Bearer KEY</code>.</p>
<p>The dashboard will live here.</p></body></html>
"""


@router.get("/healthz")
def healthz(state: StateDep) -> dict[str, str]:
    """Liveness and database reachability."""
    with state.db.session() as s:
        s.connection().exec_driver_sql("SELECT 1")
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    """Prometheus metrics."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
def ui() -> HTMLResponse:
    """The dashboard's entry page."""
    return HTMLResponse(_UI)
