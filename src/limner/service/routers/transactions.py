"""``/v1/transactions``: one logged scoring and its image."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from limner.errors import NotFoundError
from limner.service.core.views import transaction_view
from limner.service.deps import StateDep, TransactionDep
from limner.service.schemas import TransactionRead
from limner.store.tables import Subscription

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


@router.get("/{scoring_id}", response_model=TransactionRead)
def read_transaction(request: Request, tx: TransactionDep, state: StateDep) -> TransactionRead:
    """One transaction."""
    with state.db.session() as s:
        sub = s.get(Subscription, tx.subscription_id)
    if sub is None:
        raise NotFoundError(f"no transaction {tx.scoring_id!r}")
    labels = list(sub.model_metadata["labels"])
    return transaction_view(tx, labels, str(request.base_url).rstrip("/"))


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
