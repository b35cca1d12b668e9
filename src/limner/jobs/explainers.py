"""Explainer training jobs: queued → running (games, training, calibrating) → finished | failed.

A deployment's amortized explainer (:mod:`limner.amortized`) is trained here, one training at a
time per replica on its own thread, so a long training never holds a thread that explanation
jobs need. The model is evaluated through the deployment's contained worker like every other
use of a tenant's model; the explainer network is limner's own code, trained in this process on
the model's answers. The finished explainer is data: its description in the row, its
safetensors weights in a blob. Every state change is written to the store first; a restart
queues this replica's unfinished trainings again.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import select, update

from limner.amortized.explainer import AmortizedExplainer, explainer_from
from limner.errors import LimnerError, NotFoundError
from limner.jobs.executor import ThreadExecutor
from limner.jobs.models import ModelProvider
from limner.jobs.runner import FAILED, FINISHED, QUEUED, RUNNING
from limner.store import BlobStore, Database
from limner.store.tables import Deployment, ExplainerJob, Subscription, Transaction, utcnow

log = logging.getLogger("limner.jobs")

#: The share of a training's progress each stage takes, in order.
STAGES = (("games", 0.0, 0.45), ("training", 0.45, 0.8), ("calibrating", 0.8, 1.0))
#: Seconds between progress writes of one training.
PROGRESS_INTERVAL = 0.5
#: Trained explainers kept loaded for method ``amortized``.
CACHED = 8


def encode_images(images: np.ndarray) -> bytes:
    """Uint8 images ``(N, H, W, 3)`` as ``.npy`` bytes (no pickles)."""
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(images, np.uint8), allow_pickle=False)
    return out.getvalue()


def decode_images(data: bytes) -> np.ndarray:
    """The images of :func:`encode_images`."""
    return np.load(io.BytesIO(data), allow_pickle=False)


class ExplainerTrainer:
    """Runs the explainer trainings of the store's ``explainers`` rows and loads the finished
    ones for method ``amortized``."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        models: ModelProvider,
        *,
        max_pixels: int,
        replica_id: str = "local",
    ) -> None:
        self.db, self.blobs, self.models = db, blobs, models
        self.max_pixels = max_pixels
        self.replica_id = replica_id
        self._pool = ThreadExecutor(workers=1)
        self._loaded: OrderedDict[str, AmortizedExplainer] = OrderedDict()
        self._lock = threading.Lock()

    def enqueue(self, explainer_id: str) -> None:
        """Train ``explainer_id`` (a queued row) soon."""
        self._pool.submit(self.run, explainer_id)

    def resume(self) -> int:
        """Queue again the trainings this replica was running when it stopped, and take every
        queued one; return how many."""
        with self.db.session() as s:
            s.execute(
                update(ExplainerJob)
                .where(ExplainerJob.status == RUNNING, ExplainerJob.owner == self.replica_id)
                .values(status=QUEUED, owner=None, stage="", progress=0.0)
            )
            ids = list(s.scalars(select(ExplainerJob.id).where(ExplainerJob.status == QUEUED)))
        for explainer_id in ids:
            self.enqueue(explainer_id)
        return len(ids)

    def close(self) -> None:
        """Stop taking trainings (a running one is queued again on the next start)."""
        self._pool.shutdown(wait=False)

    def run(self, explainer_id: str) -> None:
        """Claim and train ``explainer_id``; its outcome is written to the store."""
        with self.db.session() as s:
            claimed = s.execute(
                update(ExplainerJob)
                .where(ExplainerJob.id == explainer_id, ExplainerJob.status == QUEUED)
                .values(status=RUNNING, owner=self.replica_id, started_at=utcnow())
            ).rowcount  # type: ignore[attr-defined]
        if not claimed:
            return
        try:
            meta, weights = self.train(explainer_id)
        except LimnerError as exc:
            self._end(explainer_id, FAILED, error=exc.message)
        except Exception:
            log.exception("explainer training %s failed", explainer_id)
            self._end(explainer_id, FAILED, error="the training failed (see the server's log)")
        else:
            self._end(explainer_id, FINISHED, meta=meta, weights_blob=weights)

    def train(self, explainer_id: str) -> tuple[dict[str, Any], str]:
        """Train the explainer of row ``explainer_id``: its description and weights blob."""
        from limner.amortized import train_explainer

        with self.db.session() as s:
            row = s.get(ExplainerJob, explainer_id)
            dep = s.get(Deployment, row.deployment_id) if row is not None else None
        if row is None or dep is None:
            raise NotFoundError("the deployment of this explainer no longer exists")
        if dep.retired_at is not None:
            raise NotFoundError(f"deployment {dep.name!r} was retired before its explainer trained")
        model = self.models.for_deployment(dep).model
        images = self._images(row, dep, model.input_size)
        opts = row.settings
        learned = train_explainer(
            model,
            list(images),
            model_sha256=row.model_sha256,
            baseline=str(opts["baseline"]),
            pairs=int(opts["pairs"]),
            epochs=int(opts["epochs"]),
            reference_samples=int(opts["reference_samples"]),
            calibration_images=int(opts["calibration_images"]),
            seed=int(opts.get("seed", 0)),
            progress=self._progress(explainer_id),
        )
        return learned.meta, self.blobs.put(learned.weights())

    def _images(self, row: ExplainerJob, dep: Deployment, size: tuple[int, int]) -> np.ndarray:
        """The training images at the model's input size: the upload's, or the deployment's
        newest logged transactions'."""
        if row.images_blob is not None:
            return decode_images(self.blobs.get(row.images_blob))
        from limner.imaging import decode_image
        from limner.imaging.transform import resize

        with self.db.session() as s:
            keys = list(
                s.scalars(
                    select(Transaction.image_blob)
                    .join(Subscription, Subscription.id == Transaction.subscription_id)
                    .where(Subscription.deployment_id == dep.id)
                    .order_by(Transaction.seq.desc())
                    .limit(int(row.settings["limit"]))
                )
            )
        w, h = size
        decoded = (decode_image(self.blobs.get(k), max_pixels=self.max_pixels) for k in keys)
        return np.stack([resize(im, w, h) for im in decoded])

    def _progress(self, explainer_id: str) -> Callable[[str, int, int], None]:
        last = [0.0]

        def write(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL and done < total:
                return
            last[0] = now
            start, end = next(((a, b) for name, a, b in STAGES if name == stage), (0.0, 1.0))
            share = start + (end - start) * (done / total if total else 1.0)
            with self.db.session() as s:
                s.execute(
                    update(ExplainerJob)
                    .where(ExplainerJob.id == explainer_id, ExplainerJob.status == RUNNING)
                    .values(stage=stage, progress=round(min(share, 0.99), 4))
                )

        return write

    def _end(self, explainer_id: str, status: str, **values: Any) -> None:
        with self.db.session() as s:
            row = s.get(ExplainerJob, explainer_id)
            if row is None:
                return
            images = row.images_blob
            row.status, row.finished_at, row.owner = status, utcnow(), None
            row.progress = 1.0 if status == FINISHED else row.progress
            row.images_blob = None
            for name, value in values.items():
                setattr(row, name, value)
        if images is not None:  # an upload's images are kept only until the training is over
            self.blobs.delete(images)

    def load(self, explainer_id: str) -> AmortizedExplainer:
        """The finished explainer ``explainer_id`` (kept loaded for the next explanation)."""
        with self._lock:
            if explainer_id in self._loaded:
                self._loaded.move_to_end(explainer_id)
                return self._loaded[explainer_id]
        with self.db.session() as s:
            row = s.get(ExplainerJob, explainer_id)
        if row is None or row.status != FINISHED or row.weights_blob is None or row.meta is None:
            raise NotFoundError("the explainer of this explanation no longer exists")
        learned = explainer_from(row.meta, self.blobs.get(row.weights_blob), name=explainer_id)
        with self._lock:
            self._loaded[explainer_id] = learned
            while len(self._loaded) > CACHED:
                self._loaded.popitem(last=False)
        return learned
