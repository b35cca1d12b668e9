"""Scoring images with a deployment and logging every scoring of a subscribed one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from limner.errors import ConflictError, InvalidInputError, PayloadTooLargeError
from limner.imaging import check_image, decode_image, encode_png, header_pixels, resize
from limner.service.core.deployments import check_live
from limner.service.core.detections import best_box, class_scores, detect_photos, worker_detector
from limner.service.core.explainers import after_scoring, auto_explain_jobs
from limner.service.schemas import as_utc
from limner.service.state import ServiceState
from limner.settings import Settings
from limner.store import SpaceRef, new_id
from limner.store.tables import Deployment, Explanation, Subscription, Transaction, utcnow

logger = logging.getLogger("limner.service")

#: Most images one scoring request may carry.
MAX_IMAGES_PER_REQUEST = 256
#: Longest case id and file name a transaction keeps (the columns' sizes).
MAX_EXTERNAL_ID = 200
MAX_SOURCE = 500


@dataclass
class ImageItem:
    """A decoded image and, when it came as a file, the file's bytes (kept as scored); the
    caller's case id and the file name, kept with its transaction."""

    pixels: np.ndarray
    encoded: bytes | None = None
    external_id: str | None = None
    source: str | None = None


@dataclass
class ImagePayload:
    """The images of a scoring request (encoded files, or uint8 pixel arrays), with a case id
    and a file name per image where the caller gave them."""

    images: list[bytes] | list[np.ndarray]
    external_ids: list[str | None] | None = None
    sources: list[str | None] | None = None

    def items(self, settings: Settings) -> list[ImageItem]:
        """The decoded images (see :func:`decode_files`, :func:`from_pixels`)."""
        if self.images and isinstance(self.images[0], bytes):
            items = decode_files(self.images, settings)  # type: ignore[arg-type]
        else:
            items = from_pixels(self.images, settings)  # type: ignore[arg-type]
        for i, item in enumerate(items):
            item.external_id = self.external_ids[i] if self.external_ids else None
            item.source = self.sources[i] if self.sources else None
        return items


@dataclass
class Scores:
    """Probabilities of a batch and the transaction ids (``None`` when nothing was logged);
    an object detector's detections of each image (``None`` for a classifier)."""

    probabilities: np.ndarray
    scoring_ids: list[str | None]
    detections: list[list[dict[str, Any]]] | None = None


def decode_files(files: list[bytes], settings: Settings) -> list[ImageItem]:
    """Decode uploaded or base64 image files (400 for unreadable ones, 413 for bombs and for
    requests over the pixel budget, checked on the headers before anything is decoded)."""
    check_count(len(files))
    check_request_pixels([header_pixels(data) for data in files], settings)
    return [ImageItem(decode_image(data, max_pixels=settings.max_pixels), data) for data in files]


def from_pixels(images: list[np.ndarray] | np.ndarray, settings: Settings) -> list[ImageItem]:
    """Images from uint8 ``[H,W,3]`` arrays (or one ``[N,H,W,3]`` array)."""
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3:
            raise InvalidInputError(
                f"an image must have shape [H, W, 3] (RGB), got {list(im.shape)}"
            )
    check_count(len(images))
    check_request_pixels([int(im.shape[0]) * int(im.shape[1]) for im in images], settings)
    return [
        ImageItem(decode_image(np.ascontiguousarray(im), max_pixels=settings.max_pixels))
        for im in images
    ]


def check_request_pixels(pixels: list[int], settings: Settings) -> None:
    """Refuse (413) a request whose images decode to more than ``max_request_pixels`` in all."""
    total, limit = sum(pixels), settings.max_request_pixels
    if total > limit:
        raise PayloadTooLargeError(
            f"the request's images decode to {total / 1e6:.1f} megapixels in all, over the "
            f"limit of {limit / 1e6:g} megapixels per request (LIMNER_MAX_REQUEST_PIXELS)"
        )


def check_count(n: int) -> None:
    """Refuse empty and oversized batches."""
    if n < 1:
        raise InvalidInputError("no images to score")
    if n > MAX_IMAGES_PER_REQUEST:
        raise InvalidInputError(f"at most {MAX_IMAGES_PER_REQUEST} images per request, got {n}")


def score(
    state: ServiceState, dep: Deployment, items: list[ImageItem], *, log: bool = True
) -> Scores:
    """Score ``items`` with the deployment's model (sharing batches with concurrent callers);
    when the deployment is subscribed, log each scoring as a transaction before answering
    (409, before anything is scored, for a case id the subscription has logged already)."""
    check_live(dep)
    sub: Subscription | None = None
    if log:
        with state.db.session() as s:
            sub = s.scalars(
                select(Subscription).where(Subscription.deployment_id == dep.id)
            ).first()
        if sub is not None:
            check_external_ids(state, sub.id, [item.external_id for item in items])
    found = None
    # 429 when the space has enough in flight; background explanations wait while it scores
    with state.scoring_slots.take(dep.space_id), state.foreground.busy():
        loaded = state.models.for_deployment(dep)
        detector = worker_detector(loaded.model)
        if detector is not None:
            found = detect_photos(detector, [item.pixels for item in items])
            k = detector.num_classes
            probs = np.stack([class_scores(d, k) for d in found])
        else:
            w, h = loaded.model.input_size
            batch = np.stack([resize(item.pixels, w, h) for item in items])
            x = loaded.model.preprocess(batch)
            probs = loaded.batcher.predict(x, timeout=state.settings.model_call_timeout)
    state.metrics.scored.labels(dep.space_id, dep.name).inc(len(items))
    ids: list[str | None] = [None] * len(items)
    if sub is not None:
        subscribed = sub
        labels = loaded.model.labels
        logged = _log(
            state, dep.space_id, sub.id, labels, items, probs, found,
            jobs_for=lambda rows: auto_explain_jobs(state, subscribed, dep, rows),
        )  # fmt: skip
        ids = list(logged)
        try:
            after_scoring(state, sub, dep)
        except Exception:  # never the scoring's failure: the transactions are logged
            logger.exception("after scoring on subscription %s", sub.id)
    return Scores(probs, ids, found)


def check_external_ids(
    state: ServiceState,
    sub_id: str,
    external_ids: list[str | None],
    scoring_ids: list[str | None] | None = None,
) -> None:
    """Refuse (409, naming it) a case id given twice, or logged already in the subscription
    (unless by the same ``scoring_id``: a record sent again)."""
    sids = scoring_ids or [None] * len(external_ids)
    given = [(e, sid) for e, sid in zip(external_ids, sids, strict=True) if e is not None]
    if not given:
        return
    seen: set[str] = set()
    for external_id, _ in given:
        if external_id in seen:
            raise ConflictError(f"external_id {external_id!r} is given twice in this request")
        seen.add(external_id)
    with state.db.session() as s:
        logged = dict(
            s.execute(
                select(Transaction.external_id, Transaction.scoring_id).where(
                    Transaction.subscription_id == sub_id, Transaction.external_id.in_(seen)
                )
            ).all()
        )
    for external_id, scoring_id in given:
        if external_id in logged and (scoring_id is None or logged[external_id] != scoring_id):
            raise ConflictError(
                f"external_id {external_id!r} names transaction {logged[external_id]!r} of "
                "this subscription already"
            )


def _log(
    state: ServiceState,
    space_id: str,
    sub_id: str,
    labels: list[str],
    items: list[ImageItem],
    probs: np.ndarray,
    detections: list[list[dict[str, Any]]] | None = None,
    jobs_for: Callable[[list[Transaction]], list[Explanation]] | None = None,
) -> list[str]:
    """Store the images and log one transaction each; 413 (nothing logged) when the images
    would take the space over ``LIMNER_SPACE_QUOTA_BYTES``. ``jobs_for(rows)``: explanation
    jobs of the new transactions (``auto_explain``), stored in the same database transaction
    (the jobs that could be made are never lost apart from their transactions), then
    enqueued; a failure to make them is logged, never the scoring's."""
    from limner.service.core.subscriptions import check_storage_room, record_transactions
    from limner.store.blobs import releases

    images = [
        item.encoded if item.encoded is not None else encode_png(item.pixels) for item in items
    ]
    check_storage_room(state, space_id, sum(len(data) for data in images))
    since = releases()
    stored: dict[str, bytes] = {}
    rows = []
    for i, (item, data, p) in enumerate(zip(items, images, probs, strict=True)):
        blob = state.blobs.put(data)
        stored[blob] = data
        size = (item.pixels.shape[1], item.pixels.shape[0])
        row = _row(space_id, sub_id, new_id(), blob, size, labels, p, None)
        if detections is not None:
            row.detections = detections[i]
            row.label, row.class_index, row.probability = best_box(detections[i])
        row.image_bytes = len(data)
        row.external_id, row.source = item.external_id, item.source
        rows.append(row)
    jobs: list[Explanation] = []
    if jobs_for is not None:
        try:
            jobs = jobs_for(rows)
        except Exception:  # never the scoring's failure
            logger.exception("auto_explain on subscription %s", sub_id)
    try:
        record_transactions(state, space_id, rows, stored, since, jobs)
    except IntegrityError as exc:  # a concurrent request logged one of the case ids first
        if any(item.external_id for item in items):
            raise ConflictError(
                "an external_id of this request was logged by another request meanwhile"
            ) from exc
        raise
    state.metrics.transactions.labels(space_id).inc(len(rows))
    try:
        for job in jobs:
            state.runner.enqueue(job.id)
    except Exception:  # stored as queued: the runner's poll takes them up
        logger.exception("auto_explain jobs of subscription %s not enqueued", sub_id)
    return [r.scoring_id for r in rows]


def _row(
    space_id: str,
    sub_id: str,
    scoring_id: str,
    blob: str,
    size: tuple[int, int],
    labels: list[str],
    p: np.ndarray,
    timestamp: datetime | None,
) -> Transaction:
    ci = int(np.argmax(p))
    return Transaction(
        id=new_id(),  # internal: what explanations point at, never shown to clients
        scoring_id=scoring_id,
        space_id=space_id,
        subscription_id=sub_id,
        image_blob=blob,
        width=int(size[0]),
        height=int(size[1]),
        label=labels[ci],
        class_index=ci,
        probability=float(p[ci]),
        probabilities=[float(x) for x in p],
        created_at=as_utc(timestamp) or utcnow(),
    )


def log_record(
    state: ServiceState,
    space: SpaceRef,
    sub: Subscription,
    *,
    scoring_id: str | None,
    image: bytes,
    probabilities: list[float],
    timestamp: datetime | None,
    external_id: str | None = None,
    source: str | None = None,
    feedback: str | None = None,
) -> tuple[str, bool]:
    """Log one scoring of an external model; return ``(scoring_id, created)``.

    ``external_id`` (the caller's case id, unique in the subscription: 409 when another
    transaction has it), ``source`` (the file name) and ``feedback`` (the true label: 422 when
    it is not one of the model's) are kept with the transaction.

    Idempotent: a record whose ``scoring_id`` is logged already in this subscription is
    acknowledged, not doubled. Scoring ids are scoped to the space: another space's use of the
    same id is invisible here; one used by another subscription of this space is a conflict.
    A new record whose image would take the space over its quota is refused (413).
    """
    from limner.service.core.subscriptions import check_storage_room, record_transactions
    from limner.store.blobs import releases

    labels = list(sub.model_metadata["labels"])
    if len(probabilities) != len(labels):
        raise InvalidInputError(
            f"a record has {len(probabilities)} probabilities for {len(labels)} labels"
        )
    if feedback is not None and feedback not in labels:
        raise InvalidInputError(f"feedback {feedback!r} is not one of the model's labels")
    if scoring_id is not None and _existing(state, sub, scoring_id):
        return scoring_id, False
    check_external_ids(state, sub.id, [external_id])
    # the pixels are not needed, only the check that they decode and the size
    size = check_image(image, max_pixels=state.settings.max_pixels)
    check_storage_room(state, space.id, len(image))  # 413 over LIMNER_SPACE_QUOTA_BYTES
    since = releases()
    blob = state.blobs.put(image)
    sid = scoring_id or new_id()
    row = _row(space.id, sub.id, sid, blob, size, labels, np.asarray(probabilities), timestamp)
    row.image_bytes = len(image)
    row.external_id, row.source, row.feedback = external_id, source, feedback
    try:
        record_transactions(state, space.id, [row], {blob: image}, since)
    except IntegrityError as exc:
        if _existing(state, sub, sid):
            return sid, False
        if external_id is not None:
            check_external_ids(state, sub.id, [external_id])  # 409 naming it
            raise ConflictError(f"external_id {external_id!r} is logged already") from exc
        raise
    state.metrics.transactions.labels(space.id).inc()
    return sid, True


def _existing(state: ServiceState, sub: Subscription, scoring_id: str) -> bool:
    with state.db.session() as s:
        owner = s.scalar(
            select(Transaction.subscription_id).where(
                Transaction.space_id == sub.space_id, Transaction.scoring_id == scoring_id
            )
        )
    if owner is None:
        return False
    if owner != sub.id:
        raise ConflictError(f"scoring_id {scoring_id!r} belongs to another subscription")
    return True
