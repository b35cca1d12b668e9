"""Subscriptions: which models are monitored, and how their transactions are explained."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from limner.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError
from limner.explain import check_method
from limner.explain.methods import BLACK_BOX_METHODS, GRADIENT_METHODS
from limner.jobs import external_metadata
from limner.jobs.runner import REGIONS_SETTING
from limner.jobs.workers import WorkerModel
from limner.models.base import Model
from limner.models.metadata import Signature
from limner.models.remote_metadata import describe, published_signature
from limner.net import UrlPolicy
from limner.service.core.deployments import space_usage
from limner.service.core.quotas import check_explanation_settings
from limner.service.schemas import ExplainabilitySettings, SubscriptionCreate
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.blobs import referencing, release_blobs
from limner.store.lookup import list_in_space
from limner.store.tables import Deployment, Explanation, Space, Subscription, Transaction


def create_subscription(
    state: ServiceState, space: SpaceRef, body: SubscriptionCreate
) -> Subscription:
    """Subscribe a deployment of the space, or an external model."""
    if body.deployment_id is not None:
        if body.scoring_url or body.labels or body.input or body.headers or body.output:
            raise InvalidInputError(
                "give either deployment_id, or scoring_url with labels (an external model)"
            )
        with state.db.session() as s:
            dep = s.scalar(
                select(Deployment).where(
                    Deployment.id == body.deployment_id, Deployment.space_id == space.id
                )
            )
        if dep is None:
            raise NotFoundError(f"no deployment {body.deployment_id!r}")
        sub = Subscription(
            id=new_id(),
            space_id=space.id,
            name=body.name or dep.name,
            deployment_id=dep.id,
            model_metadata=dep.model_metadata,
            explainability={"enabled": False},
        )
    else:
        if not body.scoring_url or not body.labels or not body.name:
            raise InvalidInputError(
                "an external model needs name, scoring_url and labels (or give deployment_id)"
            )
        (state.models.url_policy or UrlPolicy()).check(body.scoring_url)
        published = published_tensors(state, body.scoring_url, body.headers)
        meta = external_metadata(
            name=body.name,
            labels=body.labels,
            input={**published.hints().get("input", {}), **(body.input or {})},
            problem_type=body.problem_type,
            output=body.output,
        )
        problems = published.mismatches(meta)
        if problems:
            raise InvalidInputError(
                "; ".join(problems) + " (as the server at scoring_url publishes the model)"
            )
        sub = Subscription(
            id=new_id(),
            space_id=space.id,
            name=body.name,
            scoring_url=body.scoring_url,
            model_metadata=meta.to_dict(),
            headers=body.headers or None,
            explainability={"enabled": False},
        )
    try:
        with state.db.session() as s:
            s.add(sub)
    except IntegrityError as exc:
        raise ConflictError(f"deployment {body.deployment_id!r} is subscribed already") from exc
    return sub


#: Seconds the server of an external model has to publish its model's tensors when it is
#: subscribed (a server that does not answer in time, or publishes nothing, is not checked).
EXTERNAL_METADATA_SECONDS = 5.0


def published_tensors(
    state: ServiceState, scoring_url: str, headers: dict[str, str] | None
) -> Signature:
    """What the server of an external model publishes of its tensors (``GET`` on the
    scoring URL, the Open Inference model-metadata route): the gaps of the subscription's
    input settings are filled from it, and what the user gave is checked against it. Empty
    when the server cannot be reached or publishes nothing usable."""
    from limner.models.remote import MAX_REMOTE_METADATA_BYTES
    from limner.net import guarded_client, read_bounded

    policy = state.models.url_policy or UrlPolicy()
    try:
        with guarded_client(policy, timeout=EXTERNAL_METADATA_SECONDS) as client:
            answer = read_bounded(
                client,
                "GET",
                scoring_url,
                seconds=EXTERNAL_METADATA_SECONDS,
                max_bytes=MAX_REMOTE_METADATA_BYTES,
                headers=headers or {},
            )
        if answer.status_code != 200:
            return Signature()
        return published_signature(describe(json.loads(answer.content), scoring_url))
    except Exception:  # unreachable, refused, not Open Inference: nothing to check against
        return Signature()


def list_subscriptions(state: ServiceState, space: SpaceRef) -> list[Subscription]:
    """The space's subscriptions, oldest first."""
    return list_in_space(state.db, Subscription, space.id)


def delete_subscription(state: ServiceState, sub: Subscription) -> None:
    """Remove a subscription with its transactions and explanations, and the image and pane
    blobs no remaining row references (blobs are shared by content, across spaces too)."""
    _purge(state, sub.id)
    state.models.drop_subscription(sub.id)


def delete_deployment_subscription(state: ServiceState, deployment_id: str) -> None:
    """Remove the deployment's subscription, if it has one, as :func:`delete_subscription` does.

    Call it before deleting the deployment: the database's cascade alone would leave the
    transactions' blobs behind.
    """
    with state.db.session() as s:
        sub_id = s.scalar(
            select(Subscription.id).where(Subscription.deployment_id == deployment_id)
        )
    if sub_id is not None:
        _purge(state, sub_id)
        state.models.drop_subscription(sub_id)


def check_storage_room(state: ServiceState, space_id: str, incoming: int) -> None:
    """Refuse (413) to store ``incoming`` bytes of transaction images in a space they would take
    over ``LIMNER_SPACE_QUOTA_BYTES`` (its deployments and transaction images counted)."""
    quota = state.settings.space_quota_bytes
    used = space_usage(state, space_id)
    if used + incoming > quota:
        raise PayloadTooLargeError(
            f"the space's storage quota is full (LIMNER_SPACE_QUOTA_BYTES): it holds "
            f"{used / 1e6:.1f} MB of {quota / 1e6:g} MB and these images take "
            f"{incoming / 1e6:.1f} MB more; delete a subscription (its transactions) or a "
            "deployment first"
        )


def record_transactions(
    state: ServiceState,
    space_id: str,
    rows: list[Transaction],
    stored: dict[str, bytes],
    since: int,
    jobs: Sequence[Explanation] = (),
) -> None:
    """Insert ``rows``, transactions of ``space_id``, with ``jobs`` (explanations of them),
    and add their ``image_bytes`` to the space's storage, in one database transaction.

    ``stored`` are their images (key → bytes), put after :func:`limner.store.blobs.releases`
    answered ``since``: a blob a concurrent release deleted meanwhile is stored again.
    """
    added = sum(row.image_bytes or 0 for row in rows)
    with referencing(state.blobs, stored, since), state.db.session() as s:
        s.add_all(rows)
        if jobs:
            s.flush()  # the transactions first: the jobs point at them
            s.add_all(jobs)
        s.execute(
            update(Space)
            .where(Space.id == space_id)
            .values(image_bytes=Space.image_bytes + added)
            .execution_options(synchronize_session=False)
        )


def _purge(state: ServiceState, sub_id: str) -> None:
    """Delete the subscription row (its transactions and explanations go with it) and take its
    images off the space's storage, then delete the blobs they referenced that no other row
    does."""
    with state.db.session() as s:
        # locks the row on PostgreSQL: no transaction is added to it while its blobs are listed
        row = s.get(Subscription, sub_id, with_for_update=True)
        if row is None:
            return
        in_sub = Transaction.subscription_id == sub_id
        keys = set(s.scalars(select(Transaction.image_blob).where(in_sub).distinct()))
        freed = s.scalar(select(func.coalesce(func.sum(Transaction.image_bytes), 0)).where(in_sub))
        rows = s.execute(
            select(Explanation.panes, Explanation.settings)
            .join(Transaction, Explanation.transaction_id == Transaction.id)
            .where(in_sub)
        )
        keys.update(_blob_keys(rows))
        s.delete(row)
        s.execute(
            update(Space)
            .where(Space.id == row.space_id)
            .values(image_bytes=Space.image_bytes - int(freed or 0))
            .execution_options(synchronize_session=False)
        )
    if keys:
        _release(state, keys)


def _release(state: ServiceState, keys: set[str]) -> None:
    """Delete the blobs of ``keys`` that no transaction and no explanation references."""
    with state.db.session() as s:  # one pass over the explanations (JSON, no index)
        rows = s.execute(
            select(Explanation.panes, Explanation.settings).execution_options(yield_per=1000)
        )
        keys = keys - {key for key in _blob_keys(rows) if key in keys}

    def referenced(batch: list[str]) -> set[str]:
        with state.db.session() as s:
            return set(
                s.scalars(
                    select(Transaction.image_blob)
                    .where(Transaction.image_blob.in_(batch))
                    .distinct()
                )
            )

    release_blobs(state.blobs, keys, referenced)


def _blob_keys(rows: Iterable[Any]) -> Iterator[str]:
    """The blobs explanations reference: their panes, and the region map a comparison's jobs
    share (``settings["shared_regions"]``)."""
    for panes, settings in rows:
        if isinstance(panes, dict):
            yield from (key for key in panes.values() if isinstance(key, str))
        shared = settings.get(REGIONS_SETTING) if isinstance(settings, dict) else None
        if isinstance(shared, str):
            yield shared


def set_explainability(
    state: ServiceState, sub: Subscription, settings: ExplainabilitySettings
) -> Subscription:
    """Store how the subscription's transactions are explained (422 beyond the limits).

    A gradient method is checked against the subscription's model now (422 when the model
    exposes no gradients, or has no such layer), not when a job runs.
    """
    check_explanation_settings(settings.model_dump(exclude_none=True), state.settings)
    if not settings.curves:
        check_curves_off(settings.method, sub.model_metadata.get("problem_type") == "detection")
    if settings.method in GRADIENT_METHODS or settings.steps or settings.layer:
        check_subscription_method(state, sub, settings.method, settings.steps, settings.layer)
    with state.db.session() as s:
        row = s.get(Subscription, sub.id)
        if row is None:
            raise NotFoundError(f"no subscription {sub.id!r}")
        row.explainability = settings.model_dump(exclude_none=True)
    return row


def check_curves_off(method: str, detector: bool) -> None:
    """Refuse (422) an explanation without curves where the curves are not optional: the
    gradient methods (their fit is measured on the curves) and a detector's box."""
    if method in GRADIENT_METHODS or detector:
        raise InvalidInputError(
            "curves: false applies to a classifier's region methods, not to "
            + ("an object detector's box" if detector else method)
        )


def check_subscription_method(
    state: ServiceState, sub: Subscription, method: str, steps: int | None, layer: str | None
) -> None:
    """Refuse (422) a method the subscription's model cannot be explained with."""
    dep = None
    if sub.deployment_id is not None:
        with state.db.session() as s:
            dep = s.get(Deployment, sub.deployment_id)
    if method in GRADIENT_METHODS and dep is None:
        raise InvalidInputError(
            f"{method} needs gradients, and an external model exposes none; it can be "
            f"explained with {', '.join(BLACK_BOX_METHODS)}"
        )
    check_model_method(state.models.for_subscription(sub, dep).model, method, steps, layer)


def check_model_method(model: Model, method: str, steps: int | None, layer: str | None) -> None:
    """Refuse (422) a method the model cannot be explained with: asked inside the model's
    worker when it runs in one, since its gradients live there."""
    if isinstance(model, WorkerModel):
        model.check_method(method, steps=steps, layer=layer)
    else:
        check_method(model, method, steps=steps, layer=layer)
