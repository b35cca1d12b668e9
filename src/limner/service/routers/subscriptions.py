"""``/v1/subscriptions``: monitored models, their explainability, transactions and records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from limner.errors import InvalidInputError
from limner.imaging import header_pixels
from limner.service.audit import audit_note
from limner.service.bodies import b64decode
from limner.service.core import find
from limner.service.core import subscriptions as core
from limner.service.core.scoring import check_external_ids, check_request_pixels, log_record
from limner.service.core.views import subscription_view
from limner.service.deps import SpaceDep, StateDep, SubscriptionDep
from limner.service.query import KnownQuery, TransactionFilterDep
from limner.service.schemas import (
    ExplainabilitySettings,
    PayloadRecords,
    RecordAck,
    RecordAcks,
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionRead,
    TransactionList,
)

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


@router.post("", status_code=201, response_model=SubscriptionRead)
def create_subscription(
    request: Request, body: SubscriptionCreate, space: SpaceDep, state: StateDep
) -> SubscriptionRead:
    """Subscribe a deployment (``deployment_id``) or an external model."""
    sub = core.create_subscription(state, space, body)
    audit_note(request, target=sub.id, deployment_id=sub.deployment_id)
    return subscription_view(sub)


@router.get("", response_model=SubscriptionList)
def list_subscriptions(space: SpaceDep, state: StateDep) -> SubscriptionList:
    """The space's subscriptions."""
    subs = core.list_subscriptions(state, space)
    return SubscriptionList(subscriptions=[subscription_view(s) for s in subs])


@router.get("/{subscription_id}", response_model=SubscriptionRead)
def read_subscription(sub: SubscriptionDep) -> SubscriptionRead:
    """One subscription."""
    return subscription_view(sub)


@router.delete("/{subscription_id}", status_code=204)
def delete_subscription(sub: SubscriptionDep, state: StateDep) -> Response:
    """Remove a subscription with its transactions and explanations."""
    core.delete_subscription(state, sub)
    return Response(status_code=204)


@router.put("/{subscription_id}/explainability", response_model=SubscriptionRead)
def set_explainability(
    request: Request, body: ExplainabilitySettings, sub: SubscriptionDep, state: StateDep
) -> SubscriptionRead:
    """Turn explanations on or off and choose how they are made."""
    audit_note(request, settings=body.model_dump(exclude_none=True))
    return subscription_view(core.set_explainability(state, sub, body))


@router.post("/{subscription_id}/payload-records", response_model=RecordAcks)
def log_payload_records(
    body: PayloadRecords, sub: SubscriptionDep, space: SpaceDep, state: StateDep
) -> RecordAcks:
    """Log scorings of an external model (idempotent on ``scoring_id``), with their case ids,
    file names and true labels where given."""
    labels = [str(x) for x in sub.model_metadata["labels"]]
    for i, r in enumerate(body.records):
        if r.feedback is not None and r.feedback not in labels:
            raise InvalidInputError(
                f"records[{i}].feedback: {r.feedback!r} is not one of the model's labels"
            )
    check_external_ids(
        state, sub.id, [r.external_id for r in body.records], [r.scoring_id for r in body.records]
    )
    images = [b64decode(r.image, f"records[{i}].image") for i, r in enumerate(body.records)]
    check_request_pixels([header_pixels(image) for image in images], state.settings)
    acks = []
    for record, image in zip(body.records, images, strict=True):
        sid, created = log_record(
            state,
            space,
            sub,
            scoring_id=record.scoring_id,
            image=image,
            probabilities=record.probabilities,
            timestamp=record.timestamp,
            external_id=record.external_id,
            source=record.source,
            feedback=record.feedback,
        )
        acks.append(RecordAck(scoring_id=sid, created=created))
    return RecordAcks(records=acks)


@router.get(
    "/{subscription_id}/transactions", response_model=TransactionList, dependencies=[KnownQuery]
)
def list_transactions(
    request: Request,
    sub: SubscriptionDep,
    space: SpaceDep,
    state: StateDep,
    flt: TransactionFilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TransactionList:
    """The subscription's transactions that the filters select, newest first."""
    rows, total = find.find_transactions(state, space, flt, limit=limit, offset=offset, sub=sub)
    base = str(request.base_url).rstrip("/")
    return find.transaction_page(state, rows, total, limit, offset, base)
