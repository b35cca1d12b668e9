"""``/v1/transactions``: the space's logged scorings, one of them and its image, feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from limner.errors import NotFoundError
from limner.service.audit import audit_note
from limner.service.core import find
from limner.service.deps import SpaceDep, StateDep, TransactionDep
from limner.service.query import KnownQuery, TransactionFilterDep
from limner.service.schemas import FeedbackSet, TransactionList, TransactionRead
from limner.service.state import ServiceState
from limner.store.tables import Subscription, Transaction

router = APIRouter(prefix="/v1/transactions", tags=["transactions"])

_MEDIA_TYPES = {
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF8": "image/gif",
    b"BM": "image/bmp",
    b"RIFF": "image/webp",
    b"II*\x00": "image/tiff",
    b"MM\x00*": "image/tiff",
}


@router.get("", response_model=TransactionList, dependencies=[KnownQuery])
def list_transactions(
    request: Request,
    space: SpaceDep,
    state: StateDep,
    flt: TransactionFilterDep,
    subscription_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TransactionList:
    """The space's transactions that the filters select, newest first."""
    if subscription_id is not None:
        flt = flt.model_copy(update={"subscription_id": subscription_id})
    rows, total = find.find_transactions(state, space, flt, limit=limit, offset=offset)
    return find.transaction_page(state, rows, total, limit, offset, _base(request))


@router.get("/{scoring_id}", response_model=TransactionRead)
def read_transaction(request: Request, tx: TransactionDep, state: StateDep) -> TransactionRead:
    """One transaction."""
    return _view(state, tx, _base(request))


@router.put("/{scoring_id}/feedback", response_model=TransactionRead)
def set_feedback(
    request: Request, body: FeedbackSet, tx: TransactionDep, state: StateDep
) -> TransactionRead:
    """Record the true label of a transaction (``null`` clears it)."""
    audit_note(request, label=body.label, previous=tx.feedback)
    labels = _labels(state, tx)
    row = find.set_feedback(state, tx, labels, body.label)
    return _view(state, row, _base(request))


@router.get(
    "/{scoring_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def transaction_image(tx: TransactionDep, state: StateDep) -> Response:
    """The image as it was scored."""
    data = state.blobs.get(tx.image_blob)
    media = next(
        (m for magic, m in _MEDIA_TYPES.items() if data.startswith(magic)),
        "application/octet-stream",
    )
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=86400"})


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _labels(state: ServiceState, tx: Transaction) -> list[str]:
    with state.db.session() as s:
        sub = s.get(Subscription, tx.subscription_id)
    if sub is None:
        raise NotFoundError(f"no transaction {tx.scoring_id!r}")
    return [str(x) for x in sub.model_metadata["labels"]]


def _view(state: ServiceState, tx: Transaction, base: str) -> TransactionRead:
    return find.transaction_page(state, [tx], 1, 1, 0, base).transactions[0]
