"""Deployments' amortized explainers: training requests, which explainer is current, and the
subscription settings that train and explain on their own (``explainer_after``,
``auto_explain``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import func, select

from limner.errors import ConflictError, InvalidInputError, LimnerError, NotFoundError
from limner.jobs import FINISHED, QUEUED, RUNNING
from limner.jobs.explainers import encode_images
from limner.jobs.runner import EXPLAINER_SETTING
from limner.service.core.deployments import check_live
from limner.service.core.quotas import check_jobs_in_flight
from limner.service.explainer_schemas import ExplainerCreate, ExplainerRead
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.tables import (
    Deployment,
    ExplainerJob,
    Explanation,
    Subscription,
    Transaction,
)

log = logging.getLogger("limner.service")

METHOD = "amortized"


def _check_trainable(dep: Deployment) -> None:
    check_live(dep)
    if dep.model_metadata.get("problem_type") == "detection":
        raise InvalidInputError("an amortized explainer explains a classifier, not a detector")


def logged_images(state: ServiceState, dep: Deployment) -> int:
    """How many transactions the deployment has logged."""
    with state.db.session() as s:
        n = s.scalar(
            select(func.count())
            .select_from(Transaction)
            .join(Subscription, Subscription.id == Transaction.subscription_id)
            .where(Subscription.deployment_id == dep.id)
        )
    return int(n or 0)


def request_training(
    state: ServiceState,
    space: SpaceRef,
    dep: Deployment,
    body: ExplainerCreate,
    images: np.ndarray | None = None,
) -> ExplainerJob:
    """Queue a training of ``dep``'s explainer, from its logged transactions or from
    ``images`` (uint8 at the model's input size); 422 with fewer than 10 images, 429 while the
    space has too many jobs in flight (trainings count with explanations)."""
    _check_trainable(dep)
    if body.reference_samples > state.settings.max_samples:
        raise InvalidInputError(
            f"reference_samples {body.reference_samples} is over the limit of "
            f"{state.settings.max_samples} (LIMNER_MAX_SAMPLES)"
        )
    if images is None:
        if body.source != "transactions":
            raise InvalidInputError("source upload needs the images as multipart files 'images'")
        count = min(logged_images(state, dep), body.limit)
    else:
        images = images[: body.limit]
        count = len(images)
    if count < 10:
        raise InvalidInputError(
            f"an explainer needs at least 10 images; {count} "
            + ("were uploaded" if images is not None else "transactions are logged")
        )
    check_jobs_in_flight(state.db, space.id, state.settings)
    settings = body.model_dump()
    settings["source"] = "upload" if images is not None else "transactions"
    blob = state.blobs.put(encode_images(images)) if images is not None else None
    with state.db.session() as s:
        version = s.scalar(
            select(func.max(ExplainerJob.version)).where(ExplainerJob.deployment_id == dep.id)
        )
        row = ExplainerJob(
            id=new_id(),
            space_id=space.id,
            deployment_id=dep.id,
            version=int(version or 0) + 1,
            status=QUEUED,
            source=settings.pop("source"),
            settings=settings,
            images_blob=blob,
            model_sha256=dep.artifact_sha256,
            stage="",
            progress=0.0,
            requested_by_key=space.key_id,
            requested_by=space.key_name,
        )
        s.add(row)
    state.explainers.enqueue(row.id)
    return row


def explainers_of(state: ServiceState, dep: Deployment) -> list[ExplainerJob]:
    """The deployment's explainers, newest version first."""
    with state.db.session() as s:
        return list(
            s.scalars(
                select(ExplainerJob)
                .where(ExplainerJob.deployment_id == dep.id)
                .order_by(ExplainerJob.version.desc())
            )
        )


def current_explainer(state: ServiceState, dep: Deployment) -> ExplainerJob | None:
    """The explainer method ``amortized`` uses for ``dep``: the newest finished one trained
    for its current artifact."""
    with state.db.session() as s:
        return s.scalar(
            select(ExplainerJob)
            .where(
                ExplainerJob.deployment_id == dep.id,
                ExplainerJob.status == FINISHED,
                ExplainerJob.model_sha256.is_(None)
                if dep.artifact_sha256 is None
                else ExplainerJob.model_sha256 == dep.artifact_sha256,
            )
            .order_by(ExplainerJob.version.desc())
            .limit(1)
        )


def amortized_settings(state: ServiceState, dep_id: str | None) -> dict[str, Any]:
    """The job settings that name the explainer of method ``amortized`` for deployment
    ``dep_id`` (422 for an external model or a deployment without a trained explainer)."""
    dep = None
    if dep_id is not None:
        with state.db.session() as s:
            dep = s.get(Deployment, dep_id)
    if dep is None:
        raise InvalidInputError("method amortized needs a deployment served here")
    row = current_explainer(state, dep)
    if row is None:
        raise InvalidInputError(
            f"deployment {dep.name!r} has no trained explainer for its current model; train "
            f"one with POST /v1/deployments/{dep.id}/explainers"
        )
    return {EXPLAINER_SETTING: row.id}


def explainer_view(row: ExplainerJob, current: ExplainerJob | None = None) -> ExplainerRead:
    """An explainer as JSON (``current``: the deployment's current explainer, if known)."""
    meta = row.meta or {}
    cal = meta.get("calibration") or {}
    return ExplainerRead(
        id=row.id,
        deployment_id=row.deployment_id,
        version=row.version,
        status=row.status,  # type: ignore[arg-type]
        source=row.source,
        stage=row.stage,
        progress=row.progress,
        error=row.error,
        settings=row.settings,
        model_sha256=row.model_sha256,
        current=current is not None and current.id == row.id,
        training_images=meta.get("training_images"),
        heldout_images=meta.get("heldout_images"),
        heldout_error=cal.get("heldout_error"),
        seconds=meta.get("seconds"),
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


#: Who asked, in the records of what a subscription's settings queue on their own.
AUTOMATIC = "limner (subscription settings)"


def automatic(space_id: str) -> SpaceRef:
    """Who queues what a subscription's settings ask for on their own (in the records:
    :data:`AUTOMATIC`)."""
    return SpaceRef(id=space_id, name="", role="tenant", key_id=None, key_name=AUTOMATIC)


def auto_explain_jobs(
    state: ServiceState, sub: Subscription, dep: Deployment | None, txs: list[Transaction]
) -> list[Explanation]:
    """``auto_explain``'s jobs for the transactions ``txs`` that a scoring is logging, one
    each (method ``amortized`` when the deployment has an explainer for its current model),
    to be stored with them in one database transaction; none when the subscription does not
    ask for them, and none for a transaction its settings cannot explain now (logged, never
    the scoring's failure)."""
    from limner.service.core.explanations import auto_settings, explanation_jobs

    settings = sub.explainability or {}
    if not txs or not (settings.get("enabled") and settings.get("auto_explain")):
        return []
    overrides: dict[str, Any] = {}
    learned = current_explainer(state, dep) if dep is not None else None
    if learned is not None:
        overrides["method"] = METHOD
    try:
        settings_of = auto_settings(
            state, sub, txs[0], overrides, dep=dep,
            explainer_id=learned.id if learned is not None else None,
        )  # fmt: skip
        return explanation_jobs(automatic(sub.space_id), txs, settings_of)
    except (ConflictError, NotFoundError, InvalidInputError) as exc:
        log.info("auto_explain of subscription %s: %s", sub.id, exc.message)
        return []


def after_scoring(state: ServiceState, sub: Subscription, dep: Deployment | None) -> None:
    """What a subscription asks for once transactions are logged, besides ``auto_explain``
    (whose jobs are stored with the transactions): a training of the deployment's explainer
    when ``explainer_after`` transactions exist and it has none. Scoring never fails for it:
    what cannot be queued is logged."""
    after = (sub.explainability or {}).get("explainer_after")
    if dep is not None and after:
        _train_when_enough(state, automatic(sub.space_id), dep, int(after))


def _train_when_enough(state: ServiceState, space: SpaceRef, dep: Deployment, after: int) -> None:
    with state.db.session() as s:
        exists = s.scalar(
            select(ExplainerJob.id)
            .where(
                ExplainerJob.deployment_id == dep.id,
                ExplainerJob.status.in_((QUEUED, RUNNING, FINISHED)),
            )
            .limit(1)
        )
    if exists is not None or logged_images(state, dep) < after:
        return
    try:
        request_training(state, space, dep, ExplainerCreate(limit=max(after, 10)))
    except LimnerError as exc:
        log.info("explainer of deployment %s not trained yet: %s", dep.id, exc.message)
