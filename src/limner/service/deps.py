"""FastAPI dependencies: the service state, the caller's space, and space-scoped lookups.

:func:`current_space` is the one place a key is checked; every ``/v1`` and ``/v2`` router
depends on it, and the ``load_*`` lookups below only ever find rows of that space (anything
else is 404, exactly like an id that does not exist).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from limner.errors import AuthenticationError, NotFoundError
from limner.service.state import ServiceState
from limner.store import SpaceRef, space_for_key
from limner.store.tables import Deployment, Explanation, Subscription, Transaction


def get_state(request: Request) -> ServiceState:
    """The running service's state."""
    return request.app.state.limner  # type: ignore[no-any-return]


StateDep = Annotated[ServiceState, Depends(get_state)]


def current_space(request: Request, state: StateDep) -> SpaceRef:
    """The space of the request's ``Authorization: Bearer KEY`` (401 without a known key)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("an API key is needed: send 'Authorization: Bearer KEY'")
    space = space_for_key(state.db, token.strip())
    if space is None:
        raise AuthenticationError("the API key is not known")
    request.state.space = space
    return space


SpaceDep = Annotated[SpaceRef, Depends(current_space)]


def load_deployment(deployment_id: str, space: SpaceDep, state: StateDep) -> Deployment:
    """The deployment ``deployment_id`` of the caller's space."""
    with state.db.session() as s:
        dep = s.scalar(
            select(Deployment).where(
                Deployment.id == deployment_id, Deployment.space_id == space.id
            )
        )
    if dep is None:
        raise NotFoundError(f"no deployment {deployment_id!r}")
    return dep


def load_subscription(subscription_id: str, space: SpaceDep, state: StateDep) -> Subscription:
    """The subscription ``subscription_id`` of the caller's space."""
    with state.db.session() as s:
        sub = s.scalar(
            select(Subscription).where(
                Subscription.id == subscription_id, Subscription.space_id == space.id
            )
        )
    if sub is None:
        raise NotFoundError(f"no subscription {subscription_id!r}")
    return sub


def load_transaction(scoring_id: str, space: SpaceDep, state: StateDep) -> Transaction:
    """The transaction ``scoring_id`` of the caller's space."""
    with state.db.session() as s:
        tx = s.scalar(
            select(Transaction).where(
                Transaction.id == scoring_id, Transaction.space_id == space.id
            )
        )
    if tx is None:
        raise NotFoundError(f"no transaction {scoring_id!r}")
    return tx


def load_explanation(explanation_id: str, space: SpaceDep, state: StateDep) -> Explanation:
    """The explanation ``explanation_id`` of the caller's space."""
    with state.db.session() as s:
        exp = s.scalar(
            select(Explanation).where(
                Explanation.id == explanation_id, Explanation.space_id == space.id
            )
        )
    if exp is None:
        raise NotFoundError(f"no explanation {explanation_id!r}")
    return exp


DeploymentDep = Annotated[Deployment, Depends(load_deployment)]
SubscriptionDep = Annotated[Subscription, Depends(load_subscription)]
TransactionDep = Annotated[Transaction, Depends(load_transaction)]
ExplanationDep = Annotated[Explanation, Depends(load_explanation)]
