"""Explanation jobs: queued → running (with progress) → finished | failed.

Every state change is written to the store first, so a restart loses nothing: jobs left queued
or running are queued again by :meth:`JobRunner.resume`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from limner.errors import LimnerError, NotFoundError
from limner.imaging import decode_image
from limner.jobs.executor import Executor
from limner.jobs.models import ModelProvider
from limner.store import BlobStore, Database
from limner.store.tables import Deployment, Explanation, Subscription, Transaction, utcnow

log = logging.getLogger("limner.jobs")

QUEUED, RUNNING, FINISHED, FAILED = "queued", "running", "finished", "failed"
PANE_KINDS = ("positive", "negative", "heatmap")
#: A job that was running when the server stopped this many times is given up.
MAX_ATTEMPTS = 3
#: Seconds between progress writes of one job.
PROGRESS_INTERVAL = 0.5


def pane_path(explanation_id: str, class_index: int, kind: str) -> str:
    """The REST path of a rendered pane."""
    return f"/v1/explanations/{explanation_id}/images/{class_index}/{kind}.png"


class JobRunner:
    """Queues explanation jobs on an executor and runs them against the store."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        models: ModelProvider,
        executor: Executor,
        *,
        max_pixels: int,
        on_done: Callable[[str, float], None] | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.models = models
        self.executor = executor
        self.max_pixels = max_pixels
        self._on_done = on_done
        self._closed = threading.Event()

    def enqueue(self, explanation_id: str) -> None:
        """Run the (already stored, queued) job soon."""
        self.executor.submit(self.run, explanation_id)

    def resume(self) -> int:
        """Queue again every job left queued or running by a previous process; return how many."""
        with self.db.session() as s:
            s.execute(
                update(Explanation).where(Explanation.status == RUNNING).values(status=QUEUED)
            )
            ids = list(
                s.scalars(
                    select(Explanation.id)
                    .where(Explanation.status == QUEUED)
                    .order_by(Explanation.created_at)
                )
            )
        for job_id in ids:
            self.enqueue(job_id)
        return len(ids)

    def close(self) -> None:
        """Stop taking jobs; running ones are abandoned and resumed after a restart."""
        self._closed.set()
        self.executor.shutdown(wait=False)

    def run(self, job_id: str) -> None:
        """Run one job to its end, recording the outcome."""
        if self._closed.is_set() or not self._claim(job_id):
            return
        started = time.perf_counter()
        try:
            result, panes = self._explain(job_id)
        except LimnerError as exc:
            self._finish(job_id, FAILED, error=exc.message)
        except Exception as exc:
            log.exception("explanation %s failed", job_id)
            self._finish(job_id, FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
        else:
            self._finish(job_id, FINISHED, result=result, panes=panes)
        if self._on_done is not None:
            self._on_done(job_id, time.perf_counter() - started)

    def _claim(self, job_id: str) -> bool:
        with self.db.session() as s:
            job = s.get(Explanation, job_id)
            if job is None or job.status != QUEUED:
                return False
            if job.attempts >= MAX_ATTEMPTS:
                job.status, job.finished_at = FAILED, utcnow()
                job.error = f"gave up after {MAX_ATTEMPTS} attempts: the server stopped each time"
                return False
            claimed = s.execute(
                update(Explanation)
                .where(Explanation.id == job_id, Explanation.status == QUEUED)
                .values(
                    status=RUNNING,
                    attempts=Explanation.attempts + 1,
                    started_at=utcnow(),
                    progress=0.0,
                )
            )
            return bool(claimed.rowcount)  # type: ignore[attr-defined]

    def _explain(self, job_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        from limner.explain import explain

        with self.db.session() as s:
            job = s.get(Explanation, job_id)
            if job is None:
                raise NotFoundError("this explanation no longer exists")
            tx = s.scalar(select(Transaction).where(Transaction.id == job.transaction_id))
            if tx is None:
                raise NotFoundError("the transaction of this explanation no longer exists")
            sub = s.get(Subscription, tx.subscription_id)
            if sub is None:
                raise NotFoundError("the subscription of this transaction no longer exists")
            dep = s.get(Deployment, sub.deployment_id) if sub.deployment_id else None
            settings = dict(job.settings)
            image_key = tx.image_blob
        image = decode_image(self.blobs.get(image_key), max_pixels=self.max_pixels)
        loaded = self.models.for_subscription(sub, dep)
        exp = explain(
            image,
            loaded.model,
            predict=loaded.batcher.predict,
            progress=self._progress_writer(job_id),
            **settings,
        )
        panes = {
            f"{ci}/{kind}": self.blobs.put(exp.png(ci, kind))
            for ci in exp.explained_classes
            for kind in PANE_KINDS
        }
        result = exp.to_dict(image_refs=lambda ci, kind: pane_path(job_id, ci, kind))
        return result, panes

    def _progress_writer(self, job_id: str) -> Callable[[int, int], None]:
        last = [0.0]

        def write(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL or total <= 0:
                return
            last[0] = now
            with self.db.session() as s:
                s.execute(
                    update(Explanation)
                    .where(Explanation.id == job_id, Explanation.status == RUNNING)
                    .values(progress=min(0.99, done / total))
                )

        return write

    def _finish(
        self,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        panes: dict[str, str] | None = None,
    ) -> None:
        with self.db.session() as s:
            job = s.get(Explanation, job_id)
            if job is None:
                return
            job.status = status
            job.error = error
            job.result = result
            job.panes = panes or {}
            job.progress = 1.0 if status == FINISHED else job.progress
            job.finished_at = utcnow()
