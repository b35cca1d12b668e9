"""Dashboard dependencies: the session, CSRF checks, templates and space-scoped lookups.

Pages answer in HTML: no session sends the browser to the login page, and an id that does not
exist or belongs to another space shows the 404 page (the same one).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, Request
from fastapi.templating import Jinja2Templates

from limner.service.audit import record
from limner.service.deps import StateDep
from limner.service.guard import client_address
from limner.service.ui.sessions import SESSION_COOKIE, UiAuth, UiSession, load_secret
from limner.store.lookup import Owned, find_in_space
from limner.store.tables import Explanation, Subscription, Transaction

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
_auth_lock = threading.Lock()
#: Headers of every dashboard page: no caching, no framing, scripts and styles from here only.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class LoginRequired(Exception):
    """No valid session: the browser goes to the login page, then back to ``next``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PageNotFound(Exception):
    """A page or id that is not there (or not in the session's space)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfRejected(Exception):
    """A POST form without the session's CSRF token."""


class ViewerRefused(Exception):
    """A viewer's session sent a form that changes the space."""


def get_auth(request: Request, state: StateDep) -> UiAuth:
    """The dashboard's session keeper (made on first use, one per app)."""
    auth: UiAuth | None = getattr(request.app.state, "limner_ui_auth", None)
    if auth is None or auth.db is not state.db:
        with _auth_lock:
            auth = getattr(request.app.state, "limner_ui_auth", None)
            if auth is None or auth.db is not state.db:
                auth = UiAuth(state.db, load_secret(state.settings.data_dir))
                request.app.state.limner_ui_auth = auth
    return auth


AuthDep = Annotated[UiAuth, Depends(get_auth)]


def optional_session(request: Request, auth: AuthDep) -> UiSession | None:
    """The request's session, or ``None``."""
    return auth.check(request.cookies.get(SESSION_COOKIE))


def require_session(request: Request, auth: AuthDep) -> UiSession:
    """The request's session; without one, the login page (then back here)."""
    session = auth.check(request.cookies.get(SESSION_COOKIE))
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return session


SessionDep = Annotated[UiSession, Depends(require_session)]


def check_csrf(session: SessionDep, auth: AuthDep, csrf: str = Form("")) -> UiSession:
    """The session of a POST form that carries its CSRF token (403 otherwise)."""
    if not auth.csrf_ok(session, csrf):
        raise CsrfRejected()
    return session


CsrfSessionDep = Annotated[UiSession, Depends(check_csrf)]


def check_writer(request: Request, session: CsrfSessionDep, state: StateDep) -> UiSession:
    """A POST form's session whose key may change the space (a viewer's gets 403, recorded in
    the audit trail)."""
    if not session.space.can_write:
        record(
            state.audit,
            session.space,
            "dashboard." + request.url.path.rsplit("/", 1)[-1],
            "denied",
            target=request.url.path,
            client=client_address(request.scope),
            status=403,
        )
        raise ViewerRefused()
    return session


WriterSessionDep = Annotated[UiSession, Depends(check_writer)]


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path, never another site."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/subscriptions"


def login_url(next_url: str) -> str:
    """The login page, returning to ``next_url``."""
    return f"/ui/login?next={quote(next_url, safe='/')}"


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: UiSession | None = None,
    auth: UiAuth | None = None,
    status: int = 200,
) -> Any:
    """Render a template with the session's space and CSRF token."""
    ctx = dict(context)
    if session is not None and auth is not None:
        ctx.setdefault("space", session.space)
        ctx.setdefault("csrf", auth.csrf_token(session))
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


def when(value: datetime | None) -> str:
    """A stored time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = when


def find_subscription(state: StateDep, session: UiSession, subscription_id: str) -> Subscription:
    """The session's subscription ``subscription_id`` (404 page otherwise)."""
    return _in_space(state, session, Subscription, subscription_id, "subscription")


def find_transaction(state: StateDep, session: UiSession, scoring_id: str) -> Transaction:
    """The session's transaction ``scoring_id`` (404 page otherwise)."""
    return _in_space(state, session, Transaction, scoring_id, "transaction")


def find_explanation(state: StateDep, session: UiSession, explanation_id: str) -> Explanation:
    """The session's explanation ``explanation_id`` (404 page otherwise)."""
    return _in_space(state, session, Explanation, explanation_id, "explanation")


def _in_space(
    state: StateDep, session: UiSession, table: type[Owned], row_id: str, what: str
) -> Owned:
    row = find_in_space(state.db, table, row_id, session.space.id)
    if row is None:
        raise PageNotFound(f"There is no {what} {row_id!r} in this space.")
    return row
