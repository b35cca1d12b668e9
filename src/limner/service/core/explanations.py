"""Explanation requests: checked against the subscription's settings, stored, queued."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from limner.errors import ConflictError, InvalidInputError, LimnerError, RateLimitError
from limner.explain import DEFAULT_METHOD
from limner.explain.methods import GRADIENT_METHODS
from limner.jobs import QUEUED
from limner.jobs.runner import BACKGROUND_SETTING, EXPLAINER_SETTING
from limner.service.core.deployments import check_live
from limner.service.core.explainers import METHOD as AMORTIZED
from limner.service.core.explainers import amortized_settings
from limner.service.core.find import find_explanations, find_transactions
from limner.service.core.quotas import (
    check_explanation_settings,
    check_jobs_in_flight,
    jobs_in_flight,
)
from limner.service.core.subscriptions import check_curves_off, check_subscription_method
from limner.service.schemas import (
    ExplanationCreate,
    ExplanationFilter,
    ExplanationOverrides,
    SettingOverrides,
    TransactionFilter,
)
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.tables import Deployment, Explanation, Subscription, Transaction

log = logging.getLogger("limner.service")

#: Settings of the subscription that a request may override.
_OVERRIDABLE = (
    "method",
    "samples",
    "max_samples",
    "confidence",
    "settle_top",
    "tie_tolerance",
    "segmentation",
    "segments",
    "baseline",
    "steps",
    "layer",
    "curves",
)


def request_explanation(
    state: ServiceState, space: SpaceRef, tx: Transaction, body: ExplanationCreate
) -> Explanation:
    """Queue an explanation of ``tx`` (409 while the subscription's explainability is off, 422
    beyond the sample and segment limits, 429 while the space has too many jobs in flight)."""
    with state.db.session() as s:
        sub = s.get(Subscription, tx.subscription_id)
    settings = job_settings(state, sub, tx, body)
    check_jobs_in_flight(state.db, space.id, state.settings)
    job = _new_job(space, tx, settings)
    with state.db.session() as s:
        s.add(job)
    state.runner.enqueue(job.id)
    return job


def job_settings(
    state: ServiceState,
    sub: Subscription | None,
    tx: Transaction,
    body: ExplanationCreate,
    *,
    dep: Deployment | None = None,
    explainer_id: str | None = None,
) -> dict[str, Any]:
    """The settings of a job explaining ``tx``: the subscription's, overridden by ``body``'s
    (409 while explainability is off or the deployment is retired, 422 for settings the
    model or the limits refuse). ``dep`` (the subscription's deployment) and
    ``explainer_id`` (its current explainer, for method ``amortized``): where the caller has
    read them already."""
    if sub is not None and sub.deployment_id is not None:
        if dep is None or dep.id != sub.deployment_id:
            with state.db.session() as s:
                dep = s.get(Deployment, sub.deployment_id)
        if dep is not None:
            check_live(dep)
    if sub is None or not sub.explainability.get("enabled"):
        raise ConflictError(
            "explainability is off for this subscription; turn it on with "
            f"PUT /v1/subscriptions/{tx.subscription_id}/explainability"
        )
    settings: dict[str, Any] = {
        k: v for k, v in sub.explainability.items() if k in _OVERRIDABLE and v is not None
    }
    settings.update(body.model_dump(include=set(_OVERRIDABLE), exclude_none=True))
    method = settings.get("method", DEFAULT_METHOD)
    if sub.model_metadata.get("problem_type") == "detection":
        settings.update(box_settings(tx, body, method))
    elif body.box is not None or body.box_label is not None:
        raise InvalidInputError("box and box_label apply to an object detector's transactions")
    elif method == "drise":
        raise InvalidInputError("drise explains an object detector's box; this is a classifier")
    elif method == AMORTIZED:
        settings.update(
            {EXPLAINER_SETTING: explainer_id}
            if explainer_id is not None
            else amortized_settings(state, sub.deployment_id)
        )
    if not settings.pop("curves", True):
        check_curves_off(method, sub.model_metadata.get("problem_type") == "detection")
        settings["curves"] = False
    if method not in GRADIENT_METHODS:
        if body.steps is not None or body.layer is not None:
            raise InvalidInputError("steps and layer apply to the gradient methods only")
        settings.pop("steps", None)
        settings.pop("layer", None)
    elif body.method is not None or body.steps is not None or body.layer is not None:
        check_subscription_method(state, sub, method, settings.get("steps"), settings.get("layer"))
    if body.classes is not None:
        settings["classes"] = _check_classes(body.classes, list(sub.model_metadata["labels"]))
    if body.top_k is not None:
        settings["top_k"] = body.top_k
    if body.seed is not None:
        settings["seed"] = body.seed
    return check_explanation_settings(settings, state.settings)


def _new_job(space: SpaceRef, tx: Transaction, settings: dict[str, Any]) -> Explanation:
    return Explanation(
        id=new_id(),
        space_id=space.id,
        transaction_id=tx.id,
        status=QUEUED,
        progress=0.0,
        settings=settings,
        panes={},
        attempts=0,
        requested_by_key=space.key_id,
        requested_by=space.key_name,
        requested_role=space.role,
    )


def explanation_jobs(
    space: SpaceRef,
    txs: list[Transaction],
    settings_of: Callable[[Transaction], dict[str, Any]],
) -> list[Explanation]:
    """The queued jobs that explain a subscription's transactions ``txs`` (``auto_explain``),
    each with ``settings_of(tx)``; not yet stored (the caller stores them with the
    transactions, in one database transaction, then enqueues them). A transaction whose
    settings are refused (a detector's image without a box) gets no job and is logged; the
    others keep theirs.

    These jobs are not refused at ``LIMNER_MAX_JOBS_PER_SPACE``: they come one per scored
    image, so scoring's own limits bound them, and the runner's fair share keeps the space's
    jobs from holding every worker while other spaces' wait. They are background jobs: each
    starts once scoring has paused (:mod:`limner.jobs.foreground`)."""
    jobs = []
    for tx in txs:
        try:
            settings = settings_of(tx)
        except LimnerError as exc:
            log.info("auto_explain of transaction %s: %s", tx.scoring_id, exc.message)
            continue
        jobs.append(_new_job(space, tx, {**settings, BACKGROUND_SETTING: True}))
    return jobs


def auto_settings(
    state: ServiceState,
    sub: Subscription,
    first: Transaction,
    overrides: dict[str, Any],
    *,
    dep: Deployment | None = None,
    explainer_id: str | None = None,
) -> Callable[[Transaction], dict[str, Any]]:
    """The settings of each ``auto_explain`` job of a scoring whose first transaction is
    ``first``: the subscription's with ``overrides``, worked out once for a classifier and per
    transaction for a detector (its box); ``dep`` and ``explainer_id`` (method
    ``amortized``), where the caller has read them already; raises what
    :func:`job_settings` raises."""
    body = ExplanationCreate.model_validate({"scoring_id": first.scoring_id, **overrides})

    def settings_of(tx: Transaction) -> dict[str, Any]:
        return job_settings(state, sub, tx, body, dep=dep, explainer_id=explainer_id)

    if sub.model_metadata.get("problem_type") == "detection":
        return settings_of
    shared = settings_of(first)
    return lambda tx: shared


def box_settings(tx: Transaction, body: SettingOverrides, method: str) -> dict[str, Any]:
    """The settings that name the box of a detector's transaction a request explains: its
    number (``box``) and the box itself (``target``: its corners and class)."""
    index = pick_box(tx, body, method)
    found = (tx.detections or [])[index]
    return {"box": index, "target": {"box": found["box"], "class_index": found["class_index"]}}


def pick_box(tx: Transaction, body: SettingOverrides, method: str) -> int:
    """The box of a detector's transaction that a request explains (its number in the
    transaction's detections): ``box``, else the best-scoring box of ``box_label``, else the
    best-scoring box; 422 when there is no such box or the request asks for what a box cannot
    be explained with."""
    from limner.explain.detection import DETECTION_METHODS

    if method not in DETECTION_METHODS + GRADIENT_METHODS:  # gradients: the worker checks
        raise InvalidInputError(
            f"a detector's box is explained with {', '.join(DETECTION_METHODS)} (and, for a "
            f"detector with a torch forward, {', '.join(GRADIENT_METHODS)}), not {method!r}"
        )
    if body.classes is not None or body.top_k is not None:
        raise InvalidInputError("a detector's box is chosen with box or box_label, not classes")
    found = list(tx.detections or [])
    if not found:
        raise InvalidInputError("the detector found nothing in this image: no box to explain")
    if body.box is not None:
        if body.box >= len(found):
            raise InvalidInputError(
                f"box {body.box}: the detector found {len(found)} boxes in this image "
                f"(0..{len(found) - 1})"
            )
        return body.box
    candidates = [d for d in found if body.box_label is None or d["label"] == body.box_label]
    if not candidates:
        labels = sorted({str(d["label"]) for d in found})
        raise InvalidInputError(
            f"no box labelled {body.box_label!r} in this image (it has {', '.join(labels)})"
        )
    return int(max(candidates, key=lambda d: d["score"])["index"])


def _check_classes(classes: list[str | int], labels: list[str]) -> list[int]:
    out: list[int] = []
    for c in classes:
        if isinstance(c, int):
            if not 0 <= c < len(labels):
                raise InvalidInputError(f"class index {c} is out of range 0..{len(labels) - 1}")
            out.append(c)
        elif c in labels:
            out.append(labels.index(c))
        else:
            raise InvalidInputError(f"class {c!r} is not one of the model's labels")
    return out


def list_explanations(
    state: ServiceState, space: SpaceRef, scoring_id: str | None
) -> list[Explanation]:
    """The space's explanations (of one transaction when ``scoring_id`` is given), newest first."""
    rows, _ = find_explanations(
        state, space, ExplanationFilter(scoring_id=scoring_id), limit=None, offset=0
    )
    return rows


@dataclass
class BatchOutcome:
    """What :func:`explain_many` did: the jobs it queued (with their transactions), how many
    transactions the filter selected, and why the others were not queued."""

    matched: int
    queued: list[tuple[Explanation, Transaction]] = field(default_factory=list)
    #: (error code, message) → how many transactions.
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def not_queued(self) -> int:
        """Selected transactions that were not queued."""
        return sum(self.reasons.values())


def explain_many(
    state: ServiceState,
    space: SpaceRef,
    flt: TransactionFilter,
    overrides: ExplanationOverrides | None,
    limit: int,
) -> BatchOutcome:
    """Queue an explanation of each of the newest ``limit`` transactions ``flt`` selects, as
    :func:`request_explanation` does, until the space's jobs in flight reach
    ``LIMNER_MAX_JOBS_PER_SPACE`` (422 for overrides over the limits, before anything)."""
    extra = overrides.model_dump(exclude_none=True) if overrides is not None else {}
    settings = {k: v for k, v in extra.items() if k in _OVERRIDABLE}
    check_explanation_settings(settings, state.settings)
    rows, matched = find_transactions(state, space, flt, limit=limit)
    out = BatchOutcome(matched)
    if matched > len(rows):
        message = f"only the newest {limit} selected transactions are considered per request"
        out.reasons["limit", message] += matched - len(rows)
    room = state.settings.max_jobs_per_space - jobs_in_flight(state.db, space.id)
    for i, tx in enumerate(rows):
        if room <= 0:
            message = (
                f"the space has {state.settings.max_jobs_per_space} explanations queued or "
                "running, its limit (LIMNER_MAX_JOBS_PER_SPACE); explain the rest when some "
                "have finished"
            )
            out.reasons[RateLimitError.code, message] += len(rows) - i
            break
        body = ExplanationCreate.model_validate({"scoring_id": tx.scoring_id, **extra})
        try:
            job = request_explanation(state, space, tx, body)
        except RateLimitError as exc:
            out.reasons[exc.code, exc.message] += len(rows) - i
            break
        except LimnerError as exc:  # explainability off, a retired deployment, a method …
            out.reasons[exc.code, exc.message] += 1
            continue
        out.queued.append((job, tx))
        room -= 1
    return out
