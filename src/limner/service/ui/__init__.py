"""The dashboard (``/ui``): server-rendered pages over the same store as the REST API.

:func:`install` adds its routes, its static files and the handlers that turn a missing session
into the login page and a missing id into the 404 page.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from limner.service.ui import auth, compare_pages, find_pages, media, pages, review_pages
from limner.service.ui.deps import (
    HERE,
    CsrfRejected,
    LoginRequired,
    PageNotFound,
    ViewerRefused,
    get_auth,
    login_url,
    render,
)
from limner.service.ui.sessions import SESSION_COOKIE

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` under ``/ui``."""
    app.include_router(auth.router)
    app.include_router(auth.api)
    app.include_router(find_pages.router)  # before pages: /ui/explanations/export.jsonl
    app.include_router(pages.router)
    app.include_router(media.router)
    app.include_router(compare_pages.router)
    app.include_router(review_pages.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(exc.next_url), status_code=303)

    @app.exception_handler(PageNotFound)
    async def _not_found(request: Request, exc: PageNotFound) -> Response:
        return _error_page(request, 404, "Not found", exc.message)

    @app.exception_handler(ViewerRefused)
    async def _viewer(request: Request, _exc: ViewerRefused) -> Response:
        return _error_page(
            request,
            403,
            "Not allowed",
            "Your key is a viewer's: it reads, explains, annotates and exports, but cannot "
            "change the space. Ask the space's owner.",
        )

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _exc: CsrfRejected) -> Response:
        return _error_page(
            request,
            403,
            "Form expired",
            "The form was not sent from this dashboard session. Go back, reload and try again.",
        )


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    state = getattr(request.app.state, "limner", None)
    session = auth_ = None
    if state is not None:
        auth_ = get_auth(request, state)
        session = auth_.check(request.cookies.get(SESSION_COOKIE))
    return render(  # type: ignore[no-any-return]
        request,
        "error.html",
        {"title": title, "message": message, "status": status},
        session=session,
        auth=auth_,
        status=status,
    )
