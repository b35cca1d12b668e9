"""Dashboard pages: subscriptions and an explanation (a subscription's transactions and the
explanations list: :mod:`limner.service.ui.find_pages`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from limner.errors import ConflictError, InvalidInputError, RateLimitError
from limner.imaging.views import (
    COLOR_MAPS,
    OVERLAYS,
    POLARITIES,
    TYPES,
    ViewSettings,
)
from limner.imaging.views import FIELDS as VIEW_FIELDS
from limner.service.audit import record
from limner.service.core import explanations as explanations_core
from limner.service.core import find, vertex_views
from limner.service.core import subscriptions as subscriptions_core
from limner.service.core.annotations import annotations_of
from limner.service.deps import StateDep
from limner.service.guard import client_address
from limner.service.query import check_query_names
from limner.service.schemas import ExplainabilitySettings, ExplanationCreate
from limner.service.ui.deps import (
    AuthDep,
    CsrfSessionDep,
    PageNotFound,
    SessionDep,
    WriterSessionDep,
    find_explanation,
    find_subscription,
    find_transaction,
    render,
)
from limner.service.ui.sessions import UiSession
from limner.store.tables import Explanation, Subscription, Transaction

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/subscriptions")
def subscriptions(request: Request, session: SessionDep, auth: AuthDep, state: StateDep) -> Any:
    """The space's subscriptions with their transaction counts."""
    subs = subscriptions_core.list_subscriptions(state, session.space)
    with state.db.session() as s:
        counts = dict(
            s.execute(
                select(Transaction.subscription_id, func.count())
                .where(Transaction.space_id == session.space.id)
                .group_by(Transaction.subscription_id)
            ).all()
        )
    rows = [{"sub": sub, "count": int(counts.get(sub.id, 0))} for sub in subs]
    return render(request, "subscriptions.html", {"rows": rows}, session=session, auth=auth)


@router.post("/subscriptions/{subscription_id}/explainability")
def enable_explainability(
    request: Request, subscription_id: str, session: WriterSessionDep, state: StateDep
) -> RedirectResponse:
    """Turn explanations on with the default settings."""
    sub = find_subscription(state, session, subscription_id)
    subscriptions_core.set_explainability(state, sub, ExplainabilitySettings())
    record(
        state.audit,
        session.space,
        "subscription.settings",
        "ok",
        target=sub.id,
        client=client_address(request.scope),
        via="dashboard",
        enabled=True,
    )
    return RedirectResponse(f"/ui/subscriptions/{sub.id}?notice=enabled", status_code=303)


@router.post("/transactions/{scoring_id}/explain")
def explain(
    request: Request,
    scoring_id: str,
    session: CsrfSessionDep,
    state: StateDep,
    box: int | None = Form(None, ge=0, le=999),
) -> RedirectResponse:
    """Queue an explanation of a transaction with its subscription's settings (of an object
    detector's box ``box``, the best one by default)."""
    tx = find_transaction(state, session, scoring_id)
    client = client_address(request.scope)
    try:
        job = explanations_core.request_explanation(
            state, session.space, tx, ExplanationCreate(scoring_id=tx.scoring_id, box=box)
        )
    except (ConflictError, RateLimitError, InvalidInputError) as exc:
        record(
            state.audit,
            session.space,
            "explanation.request",
            "failed",
            target=tx.scoring_id,
            client=client,
            via="dashboard",
            status=exc.status,
        )
        notice = {RateLimitError: "busy", InvalidInputError: "limits"}.get(type(exc), "off")
        if box is not None and isinstance(exc, InvalidInputError):
            notice = "box"
        return RedirectResponse(
            f"/ui/subscriptions/{tx.subscription_id}?notice={notice}#explainability",
            status_code=303,
        )
    record(
        state.audit,
        session.space,
        "explanation.request",
        "ok",
        target=job.id,
        client=client,
        via="dashboard",
        scoring_id=tx.scoring_id,
    )
    return RedirectResponse(f"/ui/explanations/{job.id}", status_code=303)


@router.get("/transactions/{scoring_id}")
def transaction(scoring_id: str, session: SessionDep, state: StateDep) -> RedirectResponse:
    """A transaction: its newest explanation, or its subscription's page."""
    tx = find_transaction(state, session, scoring_id)
    latest = find.latest_explanations(state, [tx.id]).get(tx.id)
    target = (
        f"/ui/explanations/{latest.id}" if latest else f"/ui/subscriptions/{tx.subscription_id}"
    )
    return RedirectResponse(target, status_code=303)


@router.get("/explanations/{explanation_id}")
def explanation(
    request: Request, explanation_id: str, session: SessionDep, auth: AuthDep, state: StateDep
) -> Any:
    """An explanation: the panes, the regions, the numbers; live progress while it runs."""
    from limner.service.ui.compare_pages import compare_form
    from limner.service.ui.review_pages import annotations_view

    exp = find_explanation(state, session, explanation_id)
    tx, sub = _owner(state, session, exp)
    context = {
        "exp": exp,
        "tx": tx,
        "sub": sub,
        "result": exp.result,
        "items": [_item_view(item) for item in (exp.result or {}).get("explanations", [])],
        "others": _others(state, exp),
        "compare": compare_form(state, session, exp, sub),
        "review": annotations_view(annotations_of(state, exp.id)),
        "review_notice": request.query_params.get("review"),
        "view": _view_form(state, exp, request) if exp.result else None,
    }
    return render(request, "explanation.html", context, session=session, auth=auth)


def _view_settings(
    state: StateDep, exp: Explanation, request: Request
) -> tuple[ViewSettings, bool]:
    """The view a request's query asks for (over the subscription's default view), and
    whether the query named every setting (422 for an unknown or a bad one)."""
    given = {k: v for k, v in request.query_params.items() if k in VIEW_FIELDS and v != ""}
    base = vertex_views.base_settings(state, exp)
    return ViewSettings.from_dict(given, base), len(given) == len(VIEW_FIELDS)


def _view_form(state: StateDep, exp: Explanation, request: Request) -> dict[str, Any]:
    """What the page's view form shows: the settings, their choices, the view's query string;
    a bad value in the page's query is said and the default view shown instead."""
    error = None
    try:
        settings, _ = _view_settings(state, exp, request)
    except InvalidInputError as exc:
        error = exc.message
        settings = vertex_views.base_settings(state, exp)
    return {
        "settings": settings.to_dict(),
        "query": settings.query(),
        "error": error,
        "choices": {
            "type": TYPES,
            "polarity": POLARITIES,
            "color_map": COLOR_MAPS,
            "overlay_type": OVERLAYS,
        },
    }


@router.get("/explanations/{explanation_id}/images/{class_index}/view.png")
def explanation_view(
    request: Request, explanation_id: str, class_index: int, session: SessionDep, state: StateDep
) -> Response:
    """A Vertex-style view of an explained class for the page (the settings in the query, as
    ``GET /v1/explanations/{id}/images/{class_index}/view.png`` takes them)."""
    exp = find_explanation(state, session, explanation_id)
    check_query_names((k for k, _ in request.query_params.multi_items()), VIEW_FIELDS)
    settings, complete = _view_settings(state, exp, request)
    png = vertex_views.render_stored_view(state, exp, class_index, settings)
    cache = "private, max-age=86400" if complete else "private, no-cache"
    return Response(png, media_type="image/png", headers={"Cache-Control": cache})


def _owner(state: StateDep, session: UiSession, exp: Explanation) -> tuple[Transaction, Any]:
    with state.db.session() as s:
        tx = s.scalar(
            select(Transaction).where(
                Transaction.id == exp.transaction_id, Transaction.space_id == session.space.id
            )
        )
        if tx is None:
            raise PageNotFound("There is no such transaction in this space.")
        sub = s.get(Subscription, tx.subscription_id)
    return tx, sub


def _others(state: StateDep, exp: Explanation) -> list[Explanation]:
    """Every explanation of the same transaction, newest first."""
    with state.db.session() as s:
        return list(
            s.scalars(
                select(Explanation)
                .where(Explanation.transaction_id == exp.transaction_id)
                .order_by(Explanation.created_at.desc())
                .limit(20)
            )
        )


def _item_view(item: dict[str, Any]) -> dict[str, Any]:
    """One explained class, with what its bar chart (bars, interval whiskers, regions whose rank
    is not settled) and its top-region crops need."""
    regions = list(item.get("regions", []))
    ends = [abs(float(v)) for r in regions for v in (r.get("interval") or [r["weight"]])]
    peak = max([abs(float(r["weight"])) for r in regions] + ends, default=0.0) or 1.0
    unsettled = _unsettled(regions)
    bars = []
    for r in regions:
        w = float(r["weight"])
        half = 50.0 * abs(w) / peak
        lo, hi = r.get("interval") or (w, w)
        bars.append(
            {
                **r,
                "x": 50.0 if w >= 0 else 50.0 - half,
                "width": max(half, 0.4),
                "sign": "pos" if w > 0 else ("neg" if w < 0 else "zero"),
                "bbox_attr": ",".join(str(int(v)) for v in r["bbox"]),
                "lo_x": 50.0 + 50.0 * float(lo) / peak,
                "hi_x": 50.0 + 50.0 * float(hi) / peak,
                "unsettled": r["id"] in unsettled,
            }
        )
    crops = []
    for r in regions[:3]:
        if float(r["weight"]) <= 0:
            break
        x0, y0, x1, y1 = (int(v) for v in r["bbox"])
        crops.append({**r, "view": f"{x0} {y0} {max(x1 - x0, 1)} {max(y1 - y0, 1)}"})
    return {**item, "bars": bars, "crops": crops}


def _unsettled(regions: list[dict[str, Any]]) -> set[int]:
    """Regions whose place in the chart is not settled: the interval crosses zero, or overlaps
    the interval of a neighbour in the order."""
    out: set[int] = set()
    spans = [(r["id"], *(r.get("interval") or (r["weight"], r["weight"]))) for r in regions]
    for k, (rid, lo, hi) in enumerate(spans):
        if lo < 0 < hi:
            out.add(rid)
        if k + 1 < len(spans):
            nid, nlo, nhi = spans[k + 1]
            if lo <= nhi and nlo <= hi and (lo, hi) != (nlo, nhi):
                out.update((rid, nid))
    return out
