"""What dashboard pages load besides HTML: images, panes and the progress of a job (JSON)."""

from __future__ import annotations

import io
from typing import Literal

from fastapi import APIRouter, Response
from PIL import Image

from limner.service.deps import StateDep
from limner.service.ui.deps import PageNotFound, SessionDep, find_explanation, find_transaction

router = APIRouter(prefix="/ui", include_in_schema=False)

#: Longest side of a thumbnail, in pixels.
THUMB_SIDE = 160
_CACHE = {"Cache-Control": "private, max-age=86400"}


def _media_type(data: bytes) -> str:
    for magic, media in (
        (b"\x89PNG", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"RIFF", "image/webp"),
    ):
        if data.startswith(magic):
            return media
    return "application/octet-stream"


def _thumbnail(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as source:
        source.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
        small = source.convert("RGB")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=85)
    return out.getvalue()


@router.get("/media/transactions/{scoring_id}")
def transaction_image(
    scoring_id: str, session: SessionDep, state: StateDep, thumb: bool = False
) -> Response:
    """A transaction's image as scored (``thumb=1``: a small JPEG)."""
    tx = find_transaction(state, session, scoring_id)
    data = state.blobs.get(tx.image_blob)
    if thumb:
        try:
            return Response(_thumbnail(data), media_type="image/jpeg", headers=_CACHE)
        except (OSError, ValueError):
            pass  # a format browsers read but Pillow cannot: send the original
    return Response(data, media_type=_media_type(data), headers=_CACHE)


@router.get("/media/explanations/{explanation_id}/{class_index}/{kind}.png")
def explanation_pane(
    explanation_id: str,
    class_index: int,
    kind: Literal["positive", "negative", "heatmap", "regions", "saliency"],
    session: SessionDep,
    state: StateDep,
) -> Response:
    """A rendered pane of an explained class."""
    exp = find_explanation(state, session, explanation_id)
    key = (exp.panes or {}).get(f"{class_index}/{kind}")
    if key is None:
        raise PageNotFound(f"This explanation has no {kind} pane for class {class_index}.")
    return Response(state.blobs.get(key), media_type="image/png", headers=_CACHE)


@router.get("/explanations/{explanation_id}/status.json")
def explanation_status(
    explanation_id: str, session: SessionDep, state: StateDep
) -> dict[str, object]:
    """Status, progress and error of an explanation job, for the page's progress bar."""
    exp = find_explanation(state, session, explanation_id)
    return {
        "explanation_id": exp.id,
        "status": exp.status,
        "progress": round(float(exp.progress), 4),
        "error": exp.error,
    }
