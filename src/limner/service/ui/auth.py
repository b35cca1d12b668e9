"""Dashboard log-in and log-out, and one-time login links for people who hold a key."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from limner.errors import AuthenticationError
from limner.service.audit import record
from limner.service.deps import SpaceDep
from limner.service.guard import FailedKeyLimiter, client_address
from limner.service.ui.deps import (
    AuthDep,
    CsrfSessionDep,
    login_url,
    optional_session,
    render,
    safe_next,
)
from limner.service.ui.sessions import (
    LINK_SECONDS,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
)

router = APIRouter(prefix="/ui", include_in_schema=False)
api = APIRouter(prefix="/ui", tags=["dashboard"])


def _set_session(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _login_page(
    request: Request, next_url: str, *, error: str = "", notice: str = "", status: int = 200
) -> Any:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"next": next_url, "csrf": token, "error": error, "notice": notice},
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("")
def home(request: Request, auth: AuthDep) -> Any:
    """Subscriptions when logged in, else the login page."""
    if optional_session(request, auth) is not None:
        return RedirectResponse("/ui/subscriptions", status_code=303)
    return _login_page(request, "/ui/subscriptions")


@router.get("/login")
def login_form(
    request: Request,
    auth: AuthDep,
    next: str | None = Query(None, max_length=2000),
    expired: bool = False,
) -> Any:
    """The login form."""
    target = safe_next(next)
    if optional_session(request, auth) is not None:
        return RedirectResponse(target, status_code=303)
    notice = "That login link has expired or was used already; log in with your key." * expired
    return _login_page(request, target, notice=notice)


@router.post("/login")
def login(
    request: Request,
    auth: AuthDep,
    key: str = Form("", max_length=500),
    csrf: str = Form("", max_length=200),
    next: str = Form("/ui/subscriptions", max_length=2000),
) -> Any:
    """Check the key (unknown and revoked keys alike get no session); open a session in its
    space and go on to ``next``."""
    target = safe_next(next)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not csrf or not secrets.compare_digest(cookie, csrf):
        return _login_page(request, target, error="The form expired; please try again.", status=403)
    limiter: FailedKeyLimiter = request.app.state.limner.key_limiter
    client = client_address(request.scope)
    wait = limiter.retry_after(client)
    if wait is not None:
        page = _login_page(
            request, target, error=f"Too many unknown keys; try again in {wait} s.", status=429
        )
        page.headers["Retry-After"] = str(wait)
        return page
    identity = auth.key_identity(key) if key.strip() else None
    if identity is None:
        if key.strip():
            limiter.fail(client)
        message = "That API key is not known." if key.strip() else "Enter an API key."
        return _login_page(request, target, error=message, status=401)
    space, key_id = identity
    record(request.app.state.limner.audit, space, "login", "ok", target=key_id, client=client)
    response = RedirectResponse(target, status_code=303)
    _set_session(request, response, auth.issue(space.id, key_id))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(session: CsrfSessionDep, auth: AuthDep) -> Any:
    """End the session."""
    auth.end(session)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


@router.get("/link/{token}")
def use_link(
    request: Request,
    auth: AuthDep,
    token: str,
    next: str | None = Query(None, max_length=2000),
) -> Any:
    """Redeem a one-time login link, then go on to ``next``."""
    target = safe_next(next)
    value = auth.redeem_link(token)
    if value is None:
        return RedirectResponse(login_url(target) + "&expired=1", status_code=303)
    session = auth.check(value)
    if session is not None:
        record(
            request.app.state.limner.audit,
            session.space,
            "login",
            "ok",
            target=session.key_id,
            client=client_address(request.scope),
            via="link",
        )
    # A page, not a redirect: a navigation that starts on another site (a mail, a chat) would
    # not send the new SameSite=Strict cookie along a redirect; the page's own link does.
    response = render(request, "continue.html", {"next": target})
    _set_session(request, response, value)
    return response


class LoginLinkCreate(BaseModel):
    """``POST /ui/login-links``: where the link should lead once it has logged in."""

    next: str = Field("/ui/subscriptions", max_length=2000)


class LoginLink(BaseModel):
    """A one-time dashboard login link."""

    url: str
    expires_in: int


@api.post("/login-links", response_model=LoginLink, status_code=201)
def create_login_link(
    body: LoginLinkCreate, request: Request, space: SpaceDep, auth: AuthDep
) -> LoginLink:
    """A one-time link that logs a browser into the key's space (``Authorization: Bearer``)."""
    header = request.headers.get("authorization", "")
    identity = auth.key_identity(header.partition(" ")[2])
    if identity is None:  # revoked or deleted since the key guard accepted it
        raise AuthenticationError("the API key is not known")
    token = auth.create_link(space.id, identity[1])
    base = str(request.base_url).rstrip("/")
    return LoginLink(
        url=f"{base}/ui/link/{token}?next={quote(safe_next(body.next), safe='/')}",
        expires_in=LINK_SECONDS,
    )
