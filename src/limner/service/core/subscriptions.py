"""Subscriptions: which models are monitored, and how their transactions are explained."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from limner.errors import ConflictError, InvalidInputError, NotFoundError
from limner.explain import check_method
from limner.explain.methods import BLACK_BOX_METHODS, GRADIENT_METHODS
from limner.jobs import external_metadata
from limner.net import UrlPolicy
from limner.service.core.quotas import check_explanation_settings
from limner.service.schemas import ExplainabilitySettings, SubscriptionCreate
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.lookup import list_in_space
from limner.store.tables import Deployment, Subscription, Transaction


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
        meta = external_metadata(
            name=body.name,
            labels=body.labels,
            input=body.input,
            problem_type=body.problem_type,
            output=body.output,
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


def list_subscriptions(state: ServiceState, space: SpaceRef) -> list[Subscription]:
    """The space's subscriptions, oldest first."""
    return list_in_space(state.db, Subscription, space.id)


def delete_subscription(state: ServiceState, sub: Subscription) -> None:
    """Remove a subscription with its transactions and explanations."""
    with state.db.session() as s:
        row = s.get(Subscription, sub.id)
        if row is not None:
            s.delete(row)
    state.models.drop_subscription(sub.id)


def set_explainability(
    state: ServiceState, sub: Subscription, settings: ExplainabilitySettings
) -> Subscription:
    """Store how the subscription's transactions are explained (422 beyond the limits).

    A gradient method is checked against the subscription's model now (422 when the model
    exposes no gradients, or has no such layer), not when a job runs.
    """
    check_explanation_settings(settings.model_dump(exclude_none=True), state.settings)
    if settings.method in GRADIENT_METHODS or settings.steps or settings.layer:
        check_subscription_method(state, sub, settings.method, settings.steps, settings.layer)
    with state.db.session() as s:
        row = s.get(Subscription, sub.id)
        if row is None:
            raise NotFoundError(f"no subscription {sub.id!r}")
        row.explainability = settings.model_dump(exclude_none=True)
    return row


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
    model = state.models.for_subscription(sub, dep).model
    check_method(model, method, steps=steps, layer=layer)


def list_transactions(
    state: ServiceState, sub: Subscription, *, limit: int, offset: int, label: str | None
) -> tuple[list[Transaction], int]:
    """A page of the subscription's transactions, newest first, and how many there are."""
    where = [Transaction.subscription_id == sub.id]
    if label is not None:
        where.append(Transaction.label == label)
    with state.db.session() as s:
        total = int(s.scalar(select(func.count()).select_from(Transaction).where(*where)) or 0)
        rows = list(
            s.scalars(
                select(Transaction)
                .where(*where)
                .order_by(Transaction.created_at.desc(), Transaction.seq.desc())
                .limit(limit)
                .offset(offset)
            )
        )
    return rows, total
