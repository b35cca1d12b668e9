"""Who may change what, and the audit record of every state-changing request.

Two tables decide, both by route (method and path template), so a new route is refused to
viewers and left out of the trail until someone decides otherwise:

- :data:`VIEWER_MAY`: the requests other than reads that a ``viewer`` key may make (explain,
  compare, annotate, export, its own login link); every other non-read request of a viewer is
  403 (:func:`authorize`, run by :func:`limner.service.deps.current_space` for every keyed
  route). The dashboard's forms that a viewer's session may send are listed too (the others
  depend on ``WriterSessionDep``), so that one table says what a viewer may do.
- :data:`AUDITED`: the requests that append a record to the space's hash chain, with the
  action's name. :class:`AuditMiddleware` appends the record when the response starts, so the
  record is stored before the client hears the outcome; refusals (403, 409, 422 …) are recorded
  too. Scoring is not audited: it is the data path (every scoring is a transaction already).

Handlers add what only they know (an id they created, a more precise action) with
:func:`audit_note`. The dashboard's forms, outside these routes, call :func:`record` directly.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limner.errors import ForbiddenError
from limner.service.guard import SCOPE_SPACE, client_address
from limner.store import AuditEntry, AuditLog, SpaceRef

#: Methods that only read.
READS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Non-read requests a viewer key may make: (method, route path).
VIEWER_MAY: set[tuple[str, str]] = {
    ("POST", "/v1/explanations"),
    ("POST", "/v1/explanations/{explanation_id}/annotations"),
    ("POST", "/v1/reports"),
    ("POST", "/v1/explanations/batch"),
    ("POST", "/v1/comparisons"),
    ("POST", "/ui/login-links"),
    # the dashboard's forms a viewer may send
    ("POST", "/ui/transactions/{scoring_id}/explain"),
    ("POST", "/ui/subscriptions/{subscription_id}/explain-selected"),
    ("POST", "/ui/explanations/{explanation_id}/compare"),
    ("POST", "/ui/explanations/{explanation_id}/annotations"),
}

#: Requests that append an audit record: (method, route path) -> action.
AUDITED: dict[tuple[str, str], str] = {
    ("POST", "/v1/deployments"): "deployment.create",
    ("DELETE", "/v1/deployments/{deployment_id}"): "deployment.delete",
    ("POST", "/v1/subscriptions"): "subscription.create",
    ("DELETE", "/v1/subscriptions/{subscription_id}"): "subscription.delete",
    ("PUT", "/v1/subscriptions/{subscription_id}/explainability"): "subscription.settings",
    ("POST", "/v1/explanations"): "explanation.request",
    ("POST", "/v1/explanations/{explanation_id}/annotations"): "annotation.create",
    ("GET", "/v1/explanations/{explanation_id}/report.html"): "explanation.export",
    ("GET", "/v1/explanations/{explanation_id}/report.pdf"): "explanation.export",
    ("POST", "/v1/reports"): "explanation.export",
    ("POST", "/v1/explanations/batch"): "explanation.request_many",
    ("GET", "/v1/explanations/export.jsonl"): "explanation.export",
    ("PUT", "/v1/transactions/{scoring_id}/feedback"): "transaction.feedback",
    ("POST", "/v1/comparisons"): "explanation.compare",
    ("POST", "/ui/login-links"): "login_link.create",
    ("POST", "/v1/deployments/{deployment_id}/explainers"): "explainer.train",
}

#: Where a handler leaves what it adds to its request's record.
_NOTE = "limner.audit"

#: Path parameters that name a request's target, most specific first.
_TARGETS = ("explanation_id", "scoring_id", "subscription_id", "deployment_id", "model_name")


def route_path(request_scope: Scope) -> str | None:
    """The path template of the route a request matched (``None`` before routing)."""
    route = request_scope.get("route")
    return getattr(route, "path", None)


def authorize(request: Request, space: SpaceRef) -> None:
    """Refuse (403) a viewer's request that is neither a read nor in :data:`VIEWER_MAY`."""
    if space.can_write or request.method in READS:
        return
    if (request.method, route_path(request.scope) or "") in VIEWER_MAY:
        return
    raise ForbiddenError(
        "this key is a viewer's: it reads, explains, annotates and exports, but cannot "
        "change the space"
    )


def audit_note(
    request: Request, *, target: str | None = None, action: str | None = None, **detail: Any
) -> None:
    """Add to the audit record of ``request``: the target (an id the handler created), a
    more precise action, details."""
    note = request.scope.setdefault("state", {}).setdefault(_NOTE, {})
    if target is not None:
        note["target"] = target
    if action is not None:
        note["action"] = action
    note.setdefault("detail", {}).update(detail)


def outcome_of(status: int) -> str:
    """``ok`` below 400, ``denied`` for 401/403, ``failed`` otherwise."""
    if status < 400:
        return "ok"
    return "denied" if status in (401, 403) else "failed"


def entry_for(
    space: SpaceRef, action: str, outcome: str, *, target: str = "", client: str = "", **detail: Any
) -> AuditEntry:
    """An audit entry of ``space``'s key."""
    return AuditEntry(
        action=action,
        outcome=outcome,
        target=target,
        key_id=space.key_id,
        key_name=space.key_name,
        role=space.role,
        client=client,
        detail=detail,
    )


def record(
    log: AuditLog,
    space: SpaceRef,
    action: str,
    outcome: str,
    *,
    target: str = "",
    client: str = "",
    **detail: Any,
) -> None:
    """Append a record for ``space``'s key (the dashboard's forms and the CLI)."""
    log.append(space.id, entry_for(space, action, outcome, target=target, client=client, **detail))


class AuditMiddleware:
    """Append the audit record of every :data:`AUDITED` request before its response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_after_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._record(scope, int(message["status"]))
            await send(message)

        await self.app(scope, receive, send_after_record)

    async def _record(self, scope: Scope, status: int) -> None:
        space = scope.get(SCOPE_SPACE)
        path = route_path(scope)
        if not isinstance(space, SpaceRef) or path is None:
            return
        action = AUDITED.get((scope["method"], path))
        log: AuditLog = scope["app"].state.limner.audit
        if action is None or not log.enabled:
            return
        note = (scope.get("state") or {}).get(_NOTE, {})
        params = scope.get("path_params") or {}
        target = note.get("target") or next((str(params[k]) for k in _TARGETS if k in params), "")
        entry = entry_for(
            space,
            note.get("action", action),
            outcome_of(status),
            target=target,
            client=client_address(scope),
            status=status,
            **note.get("detail", {}),
        )
        await log.append_async(space.id, entry)
