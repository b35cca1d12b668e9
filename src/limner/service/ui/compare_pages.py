"""Dashboard comparisons: the compare page, its progress, and the "Compare with…" form of an
explanation page."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from limner.errors import LimnerError
from limner.explain import DEFAULT_METHOD
from limner.explain.agreement import signs, top_regions
from limner.explain.detection import DETECTION_METHODS
from limner.explain.methods import GRADIENT_METHODS, METHODS
from limner.explain.metrics import ranking
from limner.service.audit import record
from limner.service.comparison_schemas import (
    MAX_COMPARED,
    ComparedClass,
    ComparedExplanation,
    ComparisonCreate,
)
from limner.service.core import compare as core
from limner.service.deps import StateDep
from limner.service.guard import client_address
from limner.service.ui.deps import (
    AuthDep,
    CsrfSessionDep,
    PageNotFound,
    SessionDep,
    find_explanation,
    render,
)
from limner.service.ui.sessions import UiSession
from limner.store.lookup import scoring_ids
from limner.store.tables import Explanation, Subscription

router = APIRouter(prefix="/ui", include_in_schema=False)

#: Settings of an explanation that its comparison reuses (the methods are chosen on the form).
_REUSED = (
    "samples",
    "max_samples",
    "confidence",
    "settle_top",
    "tie_tolerance",
    "segmentation",
    "segments",
    "baseline",
    "seed",
)


def compare_form(
    state: StateDep, session: UiSession, exp: Explanation, sub: Subscription | None
) -> dict[str, Any]:
    """What the "Compare with…" form of an explanation page offers: the space's live
    deployments with the same labels (the transaction's own first, checked) and the methods
    (this explanation's checked)."""
    deployments = []
    if sub is not None:
        for dep in core.comparable_deployments(state, session.space, sub):
            own = dep.id == sub.deployment_id
            deployments.append({"id": dep.id, "name": dep.name, "own": own, "checked": own})
    current = str(exp.settings.get("method", ""))
    box = exp.settings.get("box") is not None  # the gradient methods: torch detectors only
    methods = DETECTION_METHODS + GRADIENT_METHODS if box else METHODS
    return {
        "action": f"/ui/explanations/{exp.id}/compare",
        "deployments": deployments,
        "methods": [{"name": m, "checked": m == current} for m in methods],
        "max": MAX_COMPARED,
        "comparison": exp.compare_group,
    }


@router.post("/explanations/{explanation_id}/compare")
def compare(
    request: Request,
    explanation_id: str,
    session: CsrfSessionDep,
    auth: AuthDep,
    state: StateDep,
    deployment: list[str] = Form(default_factory=list),
    method: list[str] = Form(default_factory=list),
) -> Any:
    """Compare an explanation's transaction across the deployments and methods checked, with
    this explanation's settings and classes; then show the comparison."""
    exp = find_explanation(state, session, explanation_id)
    client = client_address(request.scope)
    try:
        body = _body(state, exp, deployment, method)
        comparison = core.request_comparison(state, session.space, body)
    except (LimnerError, ValidationError) as exc:
        status = exc.status if isinstance(exc, LimnerError) else 422
        message = exc.message if isinstance(exc, LimnerError) else _plain(exc)
        record(
            state.audit,
            session.space,
            "explanation.compare",
            "failed",
            target=explanation_id,
            client=client,
            via="dashboard",
            status=status,
        )
        context = {"message": message, "exp": exp}
        return render(
            request, "compare_refused.html", context, session=session, auth=auth, status=status
        )
    record(
        state.audit,
        session.space,
        "explanation.compare",
        "ok",
        target=comparison.id,
        client=client,
        via="dashboard",
        scoring_id=comparison.tx.scoring_id,
        explanations=[r.id for r in comparison.rows],
    )
    return RedirectResponse(f"/ui/comparisons/{comparison.id}", status_code=303)


def _body(
    state: StateDep, exp: Explanation, deployments: list[str], methods: list[str]
) -> ComparisonCreate:
    """The comparison the form asks for, with the explanation's settings and classes."""
    settings = {k: exp.settings[k] for k in _REUSED if exp.settings.get(k) is not None}
    chosen = methods or [str(exp.settings.get("method") or DEFAULT_METHOD)]
    if any(m in GRADIENT_METHODS for m in chosen):
        settings.update({k: exp.settings[k] for k in ("steps", "layer") if exp.settings.get(k)})
    classes = [int(i["class_index"]) for i in (exp.result or {}).get("explanations", [])]
    classes = classes or list(exp.settings.get("classes") or [])
    if exp.settings.get("box") is not None:  # a detector's box: compared on that same box
        settings["box"] = exp.settings["box"]
        classes = []
    sid = scoring_ids(state.db, [exp.transaction_id]).get(exp.transaction_id, "")
    return ComparisonCreate.model_validate(
        {
            "scoring_id": sid,
            "deployment_ids": deployments or None,
            "methods": chosen,
            **({"classes": classes} if classes else {}),
            **settings,
        }
    )


def _plain(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}"


@router.get("/comparisons/{comparison_id}")
def comparison(
    request: Request, comparison_id: str, session: SessionDep, auth: AuthDep, state: StateDep
) -> Any:
    """A comparison: the panes side by side, one region table with a column per explanation,
    the agreement and the disagreements; live progress while its explanations run."""
    c = _load(state, session, comparison_id)
    view = core.comparison_view(c)
    context = {
        "view": view,
        "tx": c.tx,
        "sub": c.sub,
        "columns": [_column(e) for e in view.explanations],
        "classes": [_class_view(cls, view.explanations) for cls in view.classes or []],
        "error": _first_error(view.explanations),
    }
    return render(request, "compare.html", context, session=session, auth=auth)


@router.get("/comparisons/{comparison_id}/status.json")
def comparison_status(
    comparison_id: str, session: SessionDep, state: StateDep
) -> dict[str, object]:
    """Status and progress of a comparison, for the page's progress bar (asked twice a
    second: the region tables and the agreement are left to the page)."""
    c = _load(state, session, comparison_id)
    return {
        "comparison_id": c.id,
        "status": core.status_of(c.rows),
        "progress": core.progress_of(c.rows),
        "error": _first_error(core.compared_explanations(c)),
    }


def _load(state: StateDep, session: UiSession, comparison_id: str) -> core.Comparison:
    try:
        return core.load_comparison(state, session.space, comparison_id)
    except LimnerError:
        raise PageNotFound(f"There is no comparison {comparison_id!r} in this space.") from None


def _first_error(explanations: list[ComparedExplanation]) -> str | None:
    for e in explanations:
        if e.status == "failed":
            return f"{e.deployment} · {e.method} failed: {e.error or 'no reason given'}"
    return None


def _column(e: ComparedExplanation) -> dict[str, Any]:
    return {**e.model_dump(), "name": f"{e.deployment} · {e.method}"}


def _class_view(cls: ComparedClass, explanations: list[ComparedExplanation]) -> dict[str, Any]:
    """One class as the page shows it: regions ordered by the first column's weight, each cell a
    bar scaled to its own column's largest weight (methods weigh in different units), the top 3
    of each column and the signs that disagree marked."""
    finished = [e for e in explanations if e.status == "finished"]
    names = {e.id: f"{e.deployment} · {e.method}" for e in finished}
    table = np.array([r.weights for r in cls.regions]).reshape(len(cls.regions), -1)
    peaks = np.abs(table).max(axis=0, initial=0.0)
    peaks[peaks == 0] = 1.0
    tops = [set(top_regions(table[:, j])) for j in range(table.shape[1])]
    sign = np.stack([signs(table[:, j]) for j in range(table.shape[1])], axis=1)
    rows = []
    for k in ranking(table[:, 0]) if len(table) else []:
        region = cls.regions[int(k)]
        flips = bool((sign[k] > 0).any() and (sign[k] < 0).any())
        cells = []
        for j, w in enumerate(region.weights):
            half = 50.0 * abs(w) / float(peaks[j])
            cells.append(
                {
                    "weight": w,
                    "x": 50.0 if w >= 0 else 50.0 - half,
                    "width": max(half, 0.4),
                    "sign": "pos" if w > 0 else ("neg" if w < 0 else "zero"),
                    "top": region.id in tops[j],
                    "flip": flips and sign[k, j] != 0,
                }
            )
        rows.append({"id": region.id, "area": region.area, "share": region.share, "cells": cells})
    pairs = [
        {
            "a": names.get(p.a, p.a),
            "b": names.get(p.b, p.b),
            "spearman": p.spearman,
            "overlap": p.top3_overlap,
            "shared": p.top3_shared,
        }
        for p in cls.agreement
    ]
    return {
        "label": cls.label,
        "class_index": cls.class_index,
        "columns": [_column(e) for e in finished],
        "rows": rows,
        "pairs": pairs,
        "disagreements": [d.text for d in cls.disagreements],
    }
