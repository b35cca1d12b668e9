"""Comparisons: one transaction explained by several deployments of the same labels and/or
several methods, all on one segmentation, and how far the explanations agree.

A comparison is a group of ordinary explanation jobs sharing a ``compare_group`` id. The
transaction's image is segmented once, when the comparison is asked, and every job of the group
explains on that region map (its blob key is the job setting
:data:`~limner.jobs.runner.REGIONS_SETTING`), so region ``#k`` is the same pixels in every
column of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import or_, select

from limner.errors import ConflictError, InvalidInputError, NotFoundError, RateLimitError
from limner.explain import DEFAULT_METHOD, DEFAULT_SEGMENTATION, DEFAULT_SEGMENTS
from limner.explain.agreement import TOP_K, agreement, disagreements
from limner.explain.methods import GRADIENT_METHODS
from limner.explain.segmentation import region_map
from limner.explain.shared_regions import dump_regions
from limner.imaging import decode_image
from limner.jobs import QUEUED, RUNNING
from limner.jobs.runner import REGIONS_SETTING
from limner.models.metadata import join_fields
from limner.service.comparison_schemas import (
    MAX_COMPARED,
    MIN_COMPARED,
    ComparedClass,
    ComparedExplanation,
    ComparedRegion,
    ComparisonCreate,
    ComparisonRead,
    DisagreementRead,
    PairAgreementRead,
)
from limner.service.core.deployments import check_live
from limner.service.core.explainers import METHOD as AMORTIZED
from limner.service.core.explainers import amortized_settings
from limner.service.core.explanations import _OVERRIDABLE, _check_classes, box_settings
from limner.service.core.quotas import (
    JOBS_RETRY_AFTER,
    check_explanation_settings,
    jobs_in_flight,
)
from limner.service.core.subscriptions import check_model_method, check_subscription_method
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.lookup import find_in_space
from limner.store.tables import Deployment, Explanation, Subscription, Transaction, utcnow

#: Settings a comparison may override (the method is chosen per explanation).
#: (a comparison always has its curves: its view compares them)
_SETTINGS = tuple(k for k in _OVERRIDABLE if k not in ("method", "curves"))


@dataclass
class Comparison:
    """A comparison as stored: its transaction, subscription and explanations (in order)."""

    id: str
    tx: Transaction
    sub: Subscription | None
    rows: list[Explanation]
    #: The name of each explanation's deployment (the subscription's name for an external
    #: model), by explanation id.
    names: dict[str, str]

    def column(self, exp: Explanation) -> str:
        """What a column of the comparison is called: ``deployment · method``."""
        return f"{self.names.get(exp.id, '?')} · {exp.settings.get('method', DEFAULT_METHOD)}"


def request_comparison(state: ServiceState, space: SpaceRef, body: ComparisonCreate) -> Comparison:
    """Queue the explanations of a comparison (404 for a transaction or deployment not in the
    space, 409 while explainability is off or for a retired deployment, 422 for deployments
    whose labels differ from the transaction's model or a comparison of fewer than two or more
    than six explanations, 429 when the space's job limit would be passed)."""
    tx = find_in_space(state.db, Transaction, body.scoring_id, space.id)
    if tx is None:
        raise NotFoundError(f"no transaction {body.scoring_id!r}")
    with state.db.session() as s:
        sub = s.get(Subscription, tx.subscription_id)
        own = s.get(Deployment, sub.deployment_id) if sub and sub.deployment_id else None
    if sub is None or not sub.explainability.get("enabled"):
        raise ConflictError(
            "explainability is off for this subscription; turn it on with "
            f"PUT /v1/subscriptions/{tx.subscription_id}/explainability"
        )
    labels = [str(v) for v in sub.model_metadata.get("labels", [])]
    deployments = _deployments(state, space, body.deployment_ids, own, labels)
    for dep in deployments:
        if dep is not None and _is_detector(dep.model_metadata) != _is_detector(sub.model_metadata):
            raise InvalidInputError(
                f"deployment {dep.name!r} and the transaction's model are not both object "
                "detectors or both classifiers: their explanations cannot be compared"
            )
    base: dict[str, Any] = {
        k: v for k, v in sub.explainability.items() if k in _SETTINGS and v is not None
    }
    base.update(body.model_dump(include=set(_SETTINGS), exclude_none=True))
    methods: list[str] = list(body.methods or [])
    methods = methods or [str(sub.explainability.get("method") or DEFAULT_METHOD)]
    if len(set(methods)) != len(methods):
        raise InvalidInputError("each method may be named once in a comparison")
    pairs = [(dep, method) for dep in deployments for method in methods]
    if not MIN_COMPARED <= len(pairs) <= MAX_COMPARED:
        raise InvalidInputError(
            f"a comparison holds {MIN_COMPARED} to {MAX_COMPARED} explanations (deployments × "
            f"methods), not {len(pairs)}: name two deployments of the same labels or two methods"
        )
    gradient = [m for m in methods if m in GRADIENT_METHODS]
    if not gradient and (body.steps is not None or body.layer is not None):
        raise InvalidInputError("steps and layer apply to the gradient methods only")
    for dep, method in pairs:
        if method in GRADIENT_METHODS:
            _check_method(state, sub, dep, method, base.get("steps"), base.get("layer"))
    if sub.model_metadata.get("problem_type") == "detection":
        for method in methods:  # one box, the transaction's, explained by every column
            base.update(box_settings(tx, body, method))
        base["classes"] = [0]  # the box's own class of its two-class target
    else:
        base["classes"] = (
            _check_classes(body.classes, labels)
            if body.classes is not None
            else _default_classes(tx, sub, body.top_k)
        )
    if body.seed is not None:
        base["seed"] = body.seed
    base["segmentation"] = base.get("segmentation") or DEFAULT_SEGMENTATION
    base["segments"] = base.get("segments") or DEFAULT_SEGMENTS
    settings = [
        check_explanation_settings(_job_settings(base, method), state.settings)
        | (amortized_settings(state, dep.id if dep else None) if method == AMORTIZED else {})
        for dep, method in pairs
    ]
    _check_room(state, space, len(pairs))
    regions_key = _segment_once(state, tx, base["segmentation"], base["segments"])
    group = new_id()
    start = utcnow()
    rows = [
        Explanation(
            id=new_id(),
            space_id=space.id,
            transaction_id=tx.id,
            status=QUEUED,
            progress=0.0,
            settings={**job, REGIONS_SETTING: regions_key},
            panes={},
            attempts=0,
            deployment_id=None if dep is None or dep is own else dep.id,
            compare_group=group,
            requested_by_key=space.key_id,
            requested_by=space.key_name,
            requested_role=space.role,
            # one after the other, so the comparison's columns keep the order asked
            created_at=start + timedelta(microseconds=i),
        )
        for i, ((dep, _), job) in enumerate(zip(pairs, settings, strict=True))
    ]
    with state.db.session() as s:
        s.add_all(rows)
    for row in rows:
        state.runner.enqueue(row.id)
    names = {row.id: _name(dep, sub) for row, (dep, _) in zip(rows, pairs, strict=True)}
    return Comparison(group, tx, sub, rows, names)


def _deployments(
    state: ServiceState,
    space: SpaceRef,
    refs: list[str] | None,
    own: Deployment | None,
    labels: list[str],
) -> list[Deployment | None]:
    """The deployments that explain (``None``: an external subscription's own model)."""
    if refs is None:
        if own is not None:
            check_live(own)
        return [own]
    out: list[Deployment | None] = []
    for ref in refs:
        dep = _find_deployment(state, space, ref)
        if own is not None and dep.id == own.id:
            dep = own
        if any(d is not None and d.id == dep.id for d in out):
            raise InvalidInputError(f"deployment {dep.name!r} is named twice")
        check_live(dep)
        _check_labels(dep, labels)
        out.append(dep)
    return out


def comparable_deployments(
    state: ServiceState, space: SpaceRef, sub: Subscription
) -> list[Deployment]:
    """The space's live deployments with the labels of ``sub``'s model (its own first)."""
    labels = [str(v) for v in sub.model_metadata.get("labels", [])]
    with state.db.session() as s:
        deps = list(
            s.scalars(
                select(Deployment)
                .where(Deployment.space_id == space.id, Deployment.retired_at.is_(None))
                .order_by(Deployment.created_at)
            )
        )
    same = [
        d
        for d in deps
        if [str(v) for v in d.model_metadata.get("labels", [])] == labels
        and _is_detector(d.model_metadata) == _is_detector(sub.model_metadata)
    ]
    return sorted(same, key=lambda d: d.id != sub.deployment_id)


def _is_detector(metadata: dict[str, Any]) -> bool:
    return metadata.get("problem_type") == "detection"


def _find_deployment(state: ServiceState, space: SpaceRef, ref: str) -> Deployment:
    """The space's deployment with id ``ref``, else the live one named ``ref`` (retired ones
    too, so that they are refused as retired, not as unknown)."""
    with state.db.session() as s:
        found = list(
            s.scalars(
                select(Deployment).where(
                    Deployment.space_id == space.id,
                    or_(Deployment.id == ref, Deployment.name == ref),
                )
            )
        )
    found.sort(key=lambda d: (d.id != ref, d.retired_at is not None))
    if not found:
        raise NotFoundError(f"no deployment {ref!r}")
    return found[0]


def _check_labels(dep: Deployment, labels: list[str]) -> None:
    """Refuse (422, naming the difference) a deployment whose labels are not the transaction's
    model's, in the same order (region weights are compared class by class)."""
    theirs = [str(v) for v in dep.model_metadata.get("labels", [])]
    if theirs == labels:
        return
    missing = [x for x in labels if x not in theirs]
    extra = [x for x in theirs if x not in labels]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {_few(missing)}")
        if extra:
            parts.append(f"adds {_few(extra)}")
        what = " and ".join(parts)
    else:
        i = next(k for k, (a, b) in enumerate(zip(labels, theirs, strict=True)) if a != b)
        what = f"orders them differently (class {i} is {theirs[i]!r}, not {labels[i]!r})"
    raise InvalidInputError(
        f"deployment {dep.name!r} cannot be compared on this transaction: its labels differ "
        f"from the transaction's model ({len(theirs)} labels against {len(labels)}; it {what})"
    )


def _few(values: list[str], n: int = 3) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


def _check_method(
    state: ServiceState,
    sub: Subscription,
    dep: Deployment | None,
    method: str,
    steps: int | None,
    layer: str | None,
) -> None:
    """Refuse (422) a gradient method the deployment's model has no gradients for."""
    if dep is None or dep.id == sub.deployment_id:
        check_subscription_method(state, sub, method, steps, layer)
        return
    check_model_method(state.models.for_deployment(dep).model, method, steps, layer)


def _default_classes(tx: Transaction, sub: Subscription, top_k: int | None) -> list[int]:
    """The transaction's ``top_k`` most probable classes (both classes of a binary model):
    every explanation explains the same classes, whatever its own model predicts."""
    p = np.asarray(tx.probabilities, dtype=np.float64)
    binary = sub.model_metadata.get("problem_type") == "binary"
    k = top_k if top_k is not None else (len(p) if binary else 1)
    if k > len(p):
        raise InvalidInputError(f"top_k={k} but the model has {len(p)} classes")
    return [int(i) for i in np.argsort(-p, kind="stable")[:k]]


def _job_settings(base: dict[str, Any], method: str) -> dict[str, Any]:
    out = {**base, "method": method}
    if method not in GRADIENT_METHODS:
        out.pop("steps", None)
        out.pop("layer", None)
    return out


def _check_room(state: ServiceState, space: SpaceRef, n: int) -> None:
    """Refuse (429) a comparison that would pass the space's limit of jobs in flight."""
    busy = jobs_in_flight(state.db, space.id)
    limit = state.settings.max_jobs_per_space
    if busy + n > limit:
        raise RateLimitError(
            f"this space has {busy} explanations queued or running and the comparison adds "
            f"{n}; the limit is {limit} (LIMNER_MAX_JOBS_PER_SPACE); try again when some have "
            "finished",
            retry_after=JOBS_RETRY_AFTER,
        )


def _segment_once(state: ServiceState, tx: Transaction, algorithm: str, segments: int) -> str:
    """Segment the transaction's image once and store the region map; its blob key."""
    rgb = decode_image(state.blobs.get(tx.image_blob), max_pixels=state.settings.max_pixels)
    return state.blobs.put(dump_regions(region_map(rgb, algorithm, segments)))


def _name(dep: Deployment | None, sub: Subscription | None) -> str:
    if dep is not None:
        return dep.name
    return sub.name if sub is not None else "?"


# --- reading ---------------------------------------------------------------------------------


def load_comparison(state: ServiceState, space: SpaceRef, comparison_id: str) -> Comparison:
    """The space's comparison ``comparison_id`` (404 otherwise, also for another space's)."""
    with state.db.session() as s:
        rows = list(
            s.scalars(
                select(Explanation)
                .where(
                    Explanation.compare_group == comparison_id,
                    Explanation.space_id == space.id,
                )
                .order_by(Explanation.created_at, Explanation.id)
            )
        )
        if not rows:
            raise NotFoundError(f"no comparison {comparison_id!r}")
        tx = s.scalar(
            select(Transaction).where(
                Transaction.id == rows[0].transaction_id, Transaction.space_id == space.id
            )
        )
        if tx is None:
            raise NotFoundError(f"no comparison {comparison_id!r}")
        sub = s.get(Subscription, tx.subscription_id)
        ids = {r.deployment_id for r in rows if r.deployment_id}
        if sub is not None and sub.deployment_id:
            ids.add(sub.deployment_id)
        deps = {
            d.id: d
            for d in s.scalars(
                select(Deployment).where(Deployment.id.in_(ids), Deployment.space_id == space.id)
            )
        }
    own = deps.get(sub.deployment_id) if sub is not None and sub.deployment_id else None
    names = {}
    for r in rows:
        dep = deps.get(r.deployment_id) if r.deployment_id else own
        names[r.id] = _name(dep, sub) if dep is not None or not r.deployment_id else "(removed)"
    return Comparison(comparison_id, tx, sub, rows, names)


def status_of(rows: list[Explanation]) -> str:
    """``queued`` until one starts, ``running`` while any is, then ``failed`` if any failed,
    else ``finished``."""
    states = {r.status for r in rows}
    if states == {QUEUED}:
        return QUEUED
    if states & {QUEUED, RUNNING}:
        return RUNNING
    return "failed" if "failed" in states else "finished"


def progress_of(rows: list[Explanation]) -> float:
    """The mean progress of the comparison's explanations."""
    return round(sum(float(r.progress) for r in rows) / len(rows), 4)


def compared_explanations(c: Comparison) -> list[ComparedExplanation]:
    """Each explanation of the comparison: deployment, method, status."""
    return [
        ComparedExplanation(
            id=r.id,
            explanation_id=r.id,
            deployment_id=r.deployment_id or (c.sub.deployment_id if c.sub else None),
            deployment=c.names.get(r.id, "?"),
            method=str(r.settings.get("method", DEFAULT_METHOD)),
            status=r.status,  # type: ignore[arg-type]
            progress=round(float(r.progress), 4),
            error=r.error,
        )
        for r in c.rows
    ]


def comparison_view(c: Comparison) -> ComparisonRead:
    """The comparison as JSON: once every explanation has ended, per class the region table,
    the pairwise agreement and the disagreements of the finished ones."""
    status = status_of(c.rows)
    done = [r for r in c.rows if r.status == "finished" and r.result]
    ended = status in ("finished", "failed")
    first = done[0].result if done else None
    settings = c.rows[0].settings
    return ComparisonRead(
        id=c.id,
        comparison_id=c.id,
        scoring_id=c.tx.scoring_id,
        status=status,  # type: ignore[arg-type]
        progress=progress_of(c.rows),
        segmentation={
            "algorithm": str(settings.get("segmentation", DEFAULT_SEGMENTATION)),
            "count": int(first["segmentation"]["count"]) if first else None,
        },
        explanations=compared_explanations(c),
        classes=compared_classes(c, done) if ended and len(done) >= MIN_COMPARED else None,
        created_at=c.rows[0].created_at,
    )


def compared_classes(c: Comparison, done: list[Explanation]) -> list[ComparedClass]:
    """Per class every finished explanation explained: the region table (a weight column per
    explanation), the pairwise agreement and the disagreements."""
    results = [r.result or {} for r in done]
    by_class = [{int(e["class_index"]): e for e in res.get("explanations", [])} for res in results]
    width, height = int(results[0]["width"]), int(results[0]["height"])
    names = [c.column(r) for r in done]
    out = []
    for ci, item in by_class[0].items():
        entries = [b[ci] for b in by_class if ci in b]
        if len(entries) < len(by_class):
            continue  # not explained by every explanation
        m = int(item.get("total_features") or len(item["regions"]))
        columns = np.zeros((len(entries), m))
        for j, e in enumerate(entries):
            for r in e["regions"]:
                if 0 <= int(r["id"]) < m:
                    columns[j, int(r["id"])] = float(r["weight"])
        areas = {int(r["id"]): int(r["area"]) for r in item["regions"]}
        regions = [
            ComparedRegion(
                id=k,
                area=areas.get(k, 0),
                share=round(100.0 * areas.get(k, 0) / max(width * height, 1), 2),
                weights=[float(v) for v in columns[:, k]],
            )
            for k in range(m)
        ]
        pairs = [
            PairAgreementRead(
                a=done[p.a].id,
                b=done[p.b].id,
                spearman=None if p.spearman is None else round(p.spearman, 4),
                top3_overlap=p.top_overlap,
                top3_shared=p.shared_top,
            )
            for p in agreement(list(columns), TOP_K)
        ]
        label = str(item["label"])
        gaps = [
            DisagreementRead(
                region=d.region,
                kind="top3" if d.kind == "top" else "sign",
                inside=[done[i].id for i in d.inside],
                outside=[done[i].id for i in d.outside],
                text=_words(d.kind, d.region, label, [names[i] for i in d.inside],
                            [names[i] for i in d.outside]),
            )
            for d in disagreements(list(columns), TOP_K)
        ]  # fmt: skip
        out.append(
            ComparedClass(
                label=label, class_index=ci, regions=regions, agreement=pairs, disagreements=gaps
            )
        )
    return out


def _words(kind: str, region: int, label: str, inside: list[str], outside: list[str]) -> str:
    if kind == "top":
        return (
            f"Region #{region} is among the top {TOP_K} for {label} in {join_fields(inside)} "
            f"but not in {join_fields(outside)}."
        )
    return (
        f"Region #{region} raises {label} in {join_fields(inside)} "
        f"but lowers it in {join_fields(outside)}."
    )
