"""Dashboard pages that find things: a subscription's transactions and the space's
explanations, with their filters in the URL; explaining a whole selection; downloading RESULTs.

A filter that cannot be read (an unknown name, a bad value) shows the page with a message
saying which and why, never an error trace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy import select

from limner.errors import InvalidInputError
from limner.service.audit import record
from limner.service.core import explanations as explanations_core
from limner.service.core import find
from limner.service.core.views import top_classes
from limner.service.deps import StateDep
from limner.service.guard import client_address
from limner.service.query import check_query_names, filter_from
from limner.service.schemas import (
    MAX_BATCH,
    ExplanationFilter,
    Method,
    Status,
    TransactionFilter,
)
from limner.service.state import ServiceState
from limner.service.ui.deps import (
    AuthDep,
    CsrfSessionDep,
    SessionDep,
    find_subscription,
    render,
)
from limner.service.ui.sessions import UiSession
from limner.store.tables import Deployment, Explanation, Subscription, Transaction, utcnow

router = APIRouter(prefix="/ui", include_in_schema=False)

#: Rows on one page.
PAGE_SIZE = 20

#: The filters of the transactions page (a subscription's: no ``subscription_id``).
TRANSACTION_FILTERS = (
    "label",
    "true_label",
    "misclassified",
    "explained",
    "external_id",
    "since",
    "until",
)
#: The filters of the explanations page.
EXPLANATION_FILTERS = (
    "status",
    "method",
    "class",
    "deployment_id",
    "requested_by",
    "settled",
    "warnings",
    "max_r2",
    "since",
    "until",
    "scoring_id",
)
#: What the explanations page says about transactions a batch did not queue, by error code.
WHY = {
    "too_many_requests": "the space reached its limit of explanations in flight; explain the "
    "rest when some have finished",
    "conflict": "explainability is off for their subscription, or its deployment is retired",
    "invalid_input": "the subscription's settings do not suit them",
    "limit": f"only the newest {MAX_BATCH} of a selection are explained at once",
}


def _given(values: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The non-empty values of ``names``."""
    return {k: values[k] for k in names if values.get(k)}


def _read_filters(
    request: Request, names: tuple[str, ...], extra: tuple[str, ...]
) -> tuple[dict[str, str], str | None]:
    """The filters of the page's query string, and a message when one cannot be read."""
    try:
        check_query_names([k for k, _ in request.query_params.multi_items()], names + extra)
    except InvalidInputError as exc:
        return _given(request.query_params, names), exc.message.replace("query parameter", "filter")
    return _given(request.query_params, names), None


def _url(path: str, values: Mapping[str, Any]) -> str:
    query = urlencode({k: v for k, v in values.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def _as_local(value: datetime | None) -> str:
    """A UTC time as a ``datetime-local`` input's value."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


# --- a subscription's transactions --------------------------------------------------------------


@router.get("/subscriptions/{subscription_id}")
def transactions(
    request: Request,
    subscription_id: str,
    session: SessionDep,
    auth: AuthDep,
    state: StateDep,
    page: int = Query(1, ge=1, le=1_000_000),
    notice: str | None = Query(None, max_length=40),
) -> Any:
    """A page of the subscription's transactions that the filters select, newest first, with
    their explanations; a button explains the whole selection."""
    sub = find_subscription(state, session, subscription_id)
    given, problem = _read_filters(request, TRANSACTION_FILTERS, ("page", "notice"))
    rows: list[Transaction] = []
    total = 0
    flt = None
    if problem is None:
        try:
            flt = filter_from(TransactionFilter, given)
            rows, total = find.find_transactions(
                state, session.space, flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, sub=sub
            )
        except InvalidInputError as exc:
            problem = exc.message
    latest = find.latest_explanations(state, [t.id for t in rows])
    labels = [str(x) for x in sub.model_metadata.get("labels", [])]
    items = [
        {"tx": t, "exp": latest.get(t.id), "top": top_classes(t.probabilities, labels, 3)}
        for t in rows
    ]
    pages = max(1, math.ceil(total / PAGE_SIZE))
    here = f"/ui/subscriptions/{sub.id}"
    shown = dict(given)
    if flt is not None:  # times as the form's inputs take them
        shown.update({k: _as_local(getattr(flt, k)) for k in ("since", "until") if k in given})
    context = {
        "sub": sub,
        "items": items,
        "total": total,
        "page": page,
        "pages": pages,
        "explainability": sub.explainability or {"enabled": False},
        "notice": notice,
        "filters": shown,
        "filtered": bool(given),
        "problem": problem,
        "labels": labels,
        "batch_size": min(total, MAX_BATCH),
        "prev_url": _url(here, {**given, "page": page - 1}),
        "next_url": _url(here, {**given, "page": page + 1}),
    }
    status = 422 if problem else 200
    return render(request, "transactions.html", context, session=session, auth=auth, status=status)


@router.post("/subscriptions/{subscription_id}/explain-selected")
async def explain_selected(
    request: Request, subscription_id: str, session: CsrfSessionDep, state: StateDep
) -> Any:
    """Queue an explanation of every transaction the page's filters select (the newest 500),
    until the space's jobs in flight reach their limit; then the explanations list, filtered to
    the ones this request asked for."""
    form = await request.form()
    given = {k: str(form[k]) for k in TRANSACTION_FILTERS if form.get(k)}
    client = client_address(request.scope)
    target = await run_in_threadpool(
        _explain_selected, state, session, subscription_id, given, client
    )
    return RedirectResponse(target, status_code=303)


def _explain_selected(
    state: ServiceState,
    session: UiSession,
    subscription_id: str,
    given: dict[str, str],
    client: str,
) -> str:
    """Queue the selection's explanations, record it; where the browser goes next."""
    sub = find_subscription(state, session, subscription_id)
    started = utcnow()
    try:
        flt = filter_from(TransactionFilter, {**given, "subscription_id": sub.id})
        out = explanations_core.explain_many(state, session.space, flt, None, MAX_BATCH)
    except InvalidInputError as exc:
        record(
            state.audit,
            session.space,
            "explanation.request_many",
            "failed",
            target=sub.id,
            client=client,
            via="dashboard",
            status=exc.status,
            filter=given,
        )
        return _url(f"/ui/subscriptions/{sub.id}", given) + "#filters"
    record(
        state.audit,
        session.space,
        "explanation.request_many",
        "ok",
        target=sub.id,
        client=client,
        via="dashboard",
        filter=given,
        queued=len(out.queued),
        not_queued=out.not_queued,
        explanation_ids=[job.id for job, _ in out.queued],
    )
    why = ",".join(sorted({code for code, _ in out.reasons}))
    target = {
        "requested_by": session.space.key_id,
        "since": started.isoformat(),
        "queued": len(out.queued),
        "not_queued": out.not_queued,
        "why": why,
    }
    return _url("/ui/explanations", target)


# --- the space's explanations -------------------------------------------------------------------


@router.get("/explanations")
def explanations(
    request: Request,
    session: SessionDep,
    auth: AuthDep,
    state: StateDep,
    page: int = Query(1, ge=1, le=1_000_000),
    queued: int | None = Query(None, ge=0),
    not_queued: int | None = Query(None, ge=0),
    why: str | None = Query(None, max_length=200),
) -> Any:
    """The space's explanations that the filters select, newest first."""
    given, problem = _read_filters(
        request, EXPLANATION_FILTERS, ("page", "queued", "not_queued", "why")
    )
    rows: list[Explanation] = []
    total = 0
    flt = None
    if problem is None:
        try:
            flt = filter_from(ExplanationFilter, given)
            rows, total = find.find_explanations(
                state, session.space, flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
            )
        except InvalidInputError as exc:
            problem = exc.message
    pages = max(1, math.ceil(total / PAGE_SIZE))
    shown = dict(given)
    if flt is not None:  # times as the form's inputs take them
        shown.update({k: _as_local(getattr(flt, k)) for k in ("since", "until") if k in given})
    context = {
        "items": _explanation_rows(state, rows),
        "total": total,
        "page": page,
        "pages": pages,
        "filters": shown,
        "filtered": bool(given),
        "problem": problem,
        "deployments": _deployments(state, session.space.id),
        "statuses": list(Status.__args__),  # type: ignore[attr-defined]
        "methods": list(Method.__args__),  # type: ignore[attr-defined]
        "batch": None
        if queued is None
        else {
            "queued": queued,
            "not_queued": not_queued or 0,
            "why": [WHY[c] for c in (why or "").split(",") if c in WHY],
        },
        "export_url": _url("/ui/explanations/export.jsonl", given),
        "prev_url": _url("/ui/explanations", {**given, "page": page - 1}),
        "next_url": _url("/ui/explanations", {**given, "page": page + 1}),
    }
    status = 422 if problem else 200
    return render(request, "explanations.html", context, session=session, auth=auth, status=status)


def _deployments(state: ServiceState, space_id: str) -> list[tuple[str, str]]:
    with state.db.session() as s:
        rows = s.execute(
            select(Deployment.id, Deployment.name)
            .where(Deployment.space_id == space_id)
            .order_by(Deployment.name)
        )
        return [(dep_id, name) for dep_id, name in rows]


def _explanation_rows(state: ServiceState, rows: list[Explanation]) -> list[dict[str, Any]]:
    """Each explanation with its transaction, subscription and a summary of its RESULT."""
    tx_ids = {e.transaction_id for e in rows}
    txs: dict[str, Transaction] = {}
    subs: dict[str, str] = {}
    if tx_ids:
        with state.db.session() as s:
            txs = {
                t.id: t for t in s.scalars(select(Transaction).where(Transaction.id.in_(tx_ids)))
            }
            sub_ids = {t.subscription_id for t in txs.values()}
            subs = dict(
                s.execute(
                    select(Subscription.id, Subscription.name).where(Subscription.id.in_(sub_ids))
                ).all()
            )
    out = []
    for e in rows:
        tx = txs.get(e.transaction_id)
        items = [i for i in (e.result or {}).get("explanations", []) if isinstance(i, dict)]
        r2 = [float(i["fit_r2"]) for i in items if isinstance(i.get("fit_r2"), (int, float))]
        out.append(
            {
                "exp": e,
                "tx": tx,
                "sub_name": subs.get(tx.subscription_id, "") if tx else "",
                "method": e.settings.get("method") or (e.result or {}).get("method", ""),
                "classes": [str(i.get("label")) for i in items],
                "settled": find.settled_verdict(items),
                "warnings": sum(len(i.get("warnings") or []) for i in items),
                "min_r2": min(r2) if r2 else None,
            }
        )
    return out


@router.get("/explanations/export.jsonl")
def export(request: Request, session: SessionDep, auth: AuthDep, state: StateDep) -> Any:
    """The RESULTs of the explanations the filters select, as JSON Lines (each is marked
    exported, and the download is recorded in the audit trail)."""
    given, problem = _read_filters(request, EXPLANATION_FILTERS, ())
    client = client_address(request.scope)
    try:
        if problem is not None:
            raise InvalidInputError(problem)
        flt = filter_from(ExplanationFilter, given)
        ids = list(find.matching_explanation_ids(state, session.space, flt))
    except InvalidInputError as exc:
        record(
            state.audit,
            session.space,
            "explanation.export",
            "failed",
            client=client,
            via="dashboard",
            status=exc.status,
            filter=given,
        )
        context = {"title": "Cannot download", "message": exc.message, "status": 422}
        return render(request, "error.html", context, session=session, auth=auth, status=422)
    find.mark_exported(state.db, ids)
    record(
        state.audit,
        session.space,
        "explanation.export",
        "ok",
        client=client,
        via="dashboard",
        filter=given,
        count=len(ids),
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        find.export_lines(state, ids, str(request.base_url).rstrip("/")),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="explanations-{stamp}.jsonl"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
