"""FastAPI dependencies: the service state, the caller's space, and space-scoped lookups.

:func:`current_space` is the one place a key is checked; every ``/v1`` and ``/v2`` router
depends on it, and the ``load_*`` lookups below only ever find rows of that space (anything
else is 404, exactly like an id that does not exist).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from limner.errors import NotFoundError
from limner.service.audit import authorize
from limner.service.guard import SCOPE_SPACE, space_of_authorization
from limner.service.state import ServiceState
from limner.store import SpaceRef
from limner.store.lookup import Owned, find_in_space
from limner.store.tables import Deployment, Explanation, Subscription, Transaction


def get_state(request: Request) -> ServiceState:
    """The running service's state."""
    return request.app.state.limner  # type: ignore[no-any-return]


StateDep = Annotated[ServiceState, Depends(get_state)]


def current_space(request: Request, state: StateDep) -> SpaceRef:
    """The space of the request's ``Authorization: Bearer KEY`` (401 without a known key; 403
    for a viewer's key on a route that changes the space: :func:`authorize`).

    :class:`~limner.service.guard.KeyGuardMiddleware` checks the key before the body is read
    and leaves the space in the scope; a request that did not pass it is checked here.
    """
    space = request.scope.get(SCOPE_SPACE)
    if not isinstance(space, SpaceRef):
        space = space_of_authorization(state.db, request.headers.get("authorization", ""))
    request.state.space = space
    authorize(request, space)
    return space


SpaceDep = Annotated[SpaceRef, Depends(current_space)]


def load_deployment(deployment_id: str, space: SpaceDep, state: StateDep) -> Deployment:
    """The deployment ``deployment_id`` of the caller's space."""
    return _in_space(state, Deployment, deployment_id, space, "deployment")


def load_subscription(subscription_id: str, space: SpaceDep, state: StateDep) -> Subscription:
    """The subscription ``subscription_id`` of the caller's space."""
    return _in_space(state, Subscription, subscription_id, space, "subscription")


def load_transaction(scoring_id: str, space: SpaceDep, state: StateDep) -> Transaction:
    """The transaction ``scoring_id`` of the caller's space."""
    return _in_space(state, Transaction, scoring_id, space, "transaction")


def load_explanation(explanation_id: str, space: SpaceDep, state: StateDep) -> Explanation:
    """The explanation ``explanation_id`` of the caller's space."""
    return _in_space(state, Explanation, explanation_id, space, "explanation")


def _in_space(
    state: ServiceState, table: type[Owned], row_id: str, space: SpaceRef, what: str
) -> Owned:
    row = find_in_space(state.db, table, row_id, space.id)
    if row is None:
        raise NotFoundError(f"no {what} {row_id!r}")
    return row


DeploymentDep = Annotated[Deployment, Depends(load_deployment)]
SubscriptionDep = Annotated[Subscription, Depends(load_subscription)]
TransactionDep = Annotated[Transaction, Depends(load_transaction)]
ExplanationDep = Annotated[Explanation, Depends(load_explanation)]
