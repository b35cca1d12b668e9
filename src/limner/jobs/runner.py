"""Explanation jobs: queued → running (with progress) → finished | failed.

Every state change is written to the store first, so a restart loses nothing. Several replicas
may share one store: a replica claims a job atomically (one conditional ``UPDATE``), holds it
under a lease that it renews while the job runs, and writes progress and the outcome only while
its claim still stands (the attempt number is the fencing token). A job whose lease expired, or
that was left queued, is taken by whichever replica looks first (:meth:`JobRunner.poll`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from limner.errors import ConflictError, LimnerError, ModelTimeoutError, NotFoundError
from limner.explain.methods import GRADIENT_METHODS
from limner.explain.result import LABELS
from limner.explain.result import Explanation as Explained
from limner.explain.segmentation import RegionMap
from limner.explain.shared_regions import load_regions
from limner.imaging import decode_image
from limner.imaging.views import encode_map
from limner.jobs.executor import Executor, RemoteJobs
from limner.jobs.foreground import Foreground
from limner.jobs.models import ModelProvider
from limner.jobs.workers import WorkerModel
from limner.store import BlobStore, Database
from limner.store.tables import Deployment, Explanation, Subscription, Transaction, utcnow

log = logging.getLogger("limner.jobs")

QUEUED, RUNNING, FINISHED, FAILED = "queued", "running", "finished", "failed"
#: A job that was running when its replica stopped this many times is given up.
MAX_ATTEMPTS = 3
#: Seconds between progress writes of one job.
PROGRESS_INTERVAL = 0.5
#: Most jobs taken in by one look at the store.
POLL_LIMIT = 1000
#: The job setting naming the blob of a region map that several jobs share (a comparison's
#: explanations are all made on the same regions); the rest of the settings go to ``explain``.
REGIONS_SETTING = "shared_regions"

#: The job setting that marks a background job (``auto_explain``'s): it starts only once
#: scoring has paused (:class:`~limner.jobs.foreground.Foreground`).
BACKGROUND_SETTING = "background"

#: The job setting naming the trained explainer (an ``explainers`` row) of method
#: ``amortized``.
EXPLAINER_SETTING = "explainer_id"

JobOutcome = tuple[dict[str, Any], dict[str, str]]


class ExplainerSource(Protocol):
    """Loads a trained explainer by its id (:class:`limner.jobs.explainers.ExplainerTrainer`)."""

    def load(self, explainer_id: str) -> Any:
        """The finished explainer ``explainer_id``."""
        ...


def _explaining_deployment(s: Session, job: Explanation, sub: Subscription) -> Deployment | None:
    """The other deployment whose model explains ``job`` (None: the transaction's own model);
    it must still be in the job's space and live."""
    if job.deployment_id is None or job.deployment_id == sub.deployment_id:
        return None
    dep = s.get(Deployment, job.deployment_id)
    if dep is None or dep.space_id != job.space_id:
        raise NotFoundError("the deployment that was to explain this transaction no longer exists")
    if dep.retired_at is not None:
        raise ConflictError(
            f"deployment {dep.name!r} was retired before it explained this transaction"
        )
    return dep


def pane_path(explanation_id: str, class_index: int, kind: str) -> str:
    """The REST path of a rendered pane."""
    return f"/v1/explanations/{explanation_id}/images/{class_index}/{kind}.png"


def attribution_key(class_index: int) -> str:
    """The key, among an explanation's stored ``panes``, of a gradient method's pixel
    attribution map of one class (a float32 ``.npy`` at the model's input size; not a pane, so
    it does not start with a class index). Views are drawn from it without recomputing."""
    return f"data/{class_index}/attribution.npy"


class Deadline:
    """The time a job has left (``None``: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float | None:
        """Seconds left, at most ``cap`` (None: no limit); :class:`ModelTimeoutError` once none
        are left."""
        if self.end is None:
            return cap
        left = self.end - time.monotonic()
        if left <= 0:
            raise ModelTimeoutError(
                f"the explanation ran past its time limit of {self.seconds:g} s "
                "(LIMNER_JOB_TIMEOUT) and was stopped"
            )
        return left if cap is None else min(left, cap)


class JobRunner:
    """Queues explanation jobs on an executor and runs them against the store.

    ``replica_id`` names this process in job leases; ``lease_seconds`` is how long a claim holds
    without renewal; every ``poll_seconds`` the runner renews its leases and takes in jobs left
    queued or orphaned (by a replica that stopped). When the executor also implements
    :class:`~limner.jobs.executor.RemoteJobs`, the model work runs there (a Ray actor) while
    this runner keeps the claim, the lease and the outcome.
    """

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        models: ModelProvider | None,
        executor: Executor | None,
        *,
        max_pixels: int,
        on_done: Callable[[str, float], None] | None = None,
        replica_id: str = "local",
        lease_seconds: float = 30.0,
        poll_seconds: float = 2.0,
        fair_share: int | None = None,
        job_timeout: float | None = None,
        explainers: ExplainerSource | None = None,
        foreground: Foreground | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.models = models
        self.executor = executor
        self.max_pixels = max_pixels
        self.replica_id = replica_id
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._on_done = on_done
        self._remote = executor if isinstance(executor, RemoteJobs) else None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # handed to the executor, not yet returned
        self._active: set[str] = set()  # claimed by this process and running
        self._keeper: threading.Thread | None = None
        #: Most jobs of one space run here at once while other spaces' jobs wait (None: any).
        self.fair_share = fair_share
        self._space_of: dict[str, str] = {}  # space of each job running here
        #: Seconds one job may take in all (None: no limit).
        self.job_timeout = job_timeout
        #: Where method ``amortized`` finds a deployment's trained explainer.
        self.explainers = explainers
        #: The scoring that background jobs make way for (None: they do not wait).
        self.foreground = foreground

    def enqueue(self, explanation_id: str) -> None:
        """Run the (already stored, queued) job soon, unless this process already has it."""
        if self.executor is None or self._closed.is_set():
            return
        with self._lock:
            if explanation_id in self._pending:
                return
            self._pending.add(explanation_id)
        self.executor.submit(self.run, explanation_id)

    def resume(self) -> int:
        """Take in the jobs left queued or orphaned, keep doing so in the background.

        Returns how many jobs were queued here now. A job left running by an earlier process
        of this replica is taken back at once; one of another replica once its lease expired.
        """
        n = self.poll()
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="limner-leases", daemon=True)
            self._keeper.start()
        return n

    def poll(self) -> int:
        """Queue here every claimable job (queued, or orphaned); return how many."""
        with self.db.session() as s:
            ids = list(
                s.scalars(
                    select(Explanation.id)
                    .where(self._claimable())
                    .order_by(Explanation.created_at)
                    .limit(POLL_LIMIT)
                )
            )
        with self._lock:
            fresh = [i for i in ids if i not in self._pending and i not in self._active]
        for job_id in fresh:
            self.enqueue(job_id)
        return len(fresh)

    def renew_leases(self) -> None:
        """Extend the lease of every job this process runs."""
        with self._lock:
            active = list(self._active)
        if not active:
            return
        with self.db.session() as s:
            s.execute(
                update(Explanation)
                .where(
                    Explanation.id.in_(active),
                    Explanation.status == RUNNING,
                    Explanation.owner == self.replica_id,
                )
                .values(lease_until=self._lease_end())
                .execution_options(synchronize_session=False)
            )

    def _keep(self) -> None:
        tick = min(self.poll_seconds, self.lease_seconds / 3)
        last_poll = time.monotonic()
        while not self._closed.wait(tick):
            try:
                self.renew_leases()
                if time.monotonic() - last_poll >= self.poll_seconds:
                    last_poll = time.monotonic()
                    self.poll()
            except Exception:  # the database may be briefly away; try again next tick
                log.warning("renewing leases or polling for jobs failed", exc_info=True)

    def close(self) -> None:
        """Stop taking jobs; running ones are abandoned and taken up again later."""
        self._closed.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
        if self.executor is not None:
            self.executor.shutdown(wait=False)

    def run(self, job_id: str) -> None:
        """Claim one job and run it to its end, recording the outcome."""
        with self._lock:
            if job_id in self._active:
                self._pending.discard(job_id)
                return
            self._active.add(job_id)
        try:
            self._run_claimed(job_id)
        finally:
            with self._lock:
                self._active.discard(job_id)
                self._pending.discard(job_id)
                self._space_of.pop(job_id, None)

    def _run_claimed(self, job_id: str) -> None:
        if self._closed.is_set() or self._over_fair_share(job_id):
            return
        if self.foreground is not None and self._is_background(job_id):
            self.foreground.wait_quiet(self._closed)
        attempt = self._claim(job_id)
        if attempt is None:
            return
        started = time.perf_counter()
        try:
            if self._remote is not None:
                result, panes = self._remote.explain(job_id, attempt)
            else:
                result, panes = self.compute(job_id, attempt)
        except LimnerError as exc:
            recorded = self._finish(job_id, attempt, FAILED, error=exc.message)
        except Exception as exc:
            if self._closed.is_set():
                return  # stopping: the job is taken up again once the lease expires
            log.exception("explanation %s failed", job_id)
            error = f"internal error: {type(exc).__name__}: {exc}"
            recorded = self._finish(job_id, attempt, FAILED, error=error)
        else:
            recorded = self._finish(job_id, attempt, FINISHED, result=result, panes=panes)
        if recorded and self._on_done is not None:
            self._on_done(job_id, time.perf_counter() - started)

    def _is_background(self, job_id: str) -> bool:
        with self.db.session() as s:
            settings = s.scalar(select(Explanation.settings).where(Explanation.id == job_id))
        return bool((settings or {}).get(BACKGROUND_SETTING))

    def space_of(self, job_id: str) -> str:
        """The space of a job running here (read when it was claimed), or ``""``."""
        with self._lock:
            return self._space_of.get(job_id, "")

    def _over_fair_share(self, job_id: str) -> bool:
        """Whether ``job_id`` should wait: its space already runs its fair share here while
        another space has jobs queued. A job left waiting stays queued; the next poll brings it
        back, behind the other spaces' jobs."""
        with self.db.session() as s:
            space_id = s.scalar(select(Explanation.space_id).where(Explanation.id == job_id))
            if space_id is None:
                return False
            with self._lock:
                running = sum(1 for sp in self._space_of.values() if sp == space_id)
                if self.fair_share is None or running < self.fair_share:
                    self._space_of[job_id] = space_id
                    return False
            others = s.scalar(
                select(Explanation.id)
                .where(Explanation.status == QUEUED, Explanation.space_id != space_id)
                .limit(1)
            )
        if others is None:
            with self._lock:
                self._space_of[job_id] = space_id
            return False
        log.debug("explanation %s waits: its space runs its fair share", job_id)
        return True

    def _lease_end(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease_seconds)

    def _claimable(self) -> ColumnElement[bool]:
        """Queued, or running under a lease that expired or that this replica holds."""
        return or_(
            Explanation.status == QUEUED,
            and_(
                Explanation.status == RUNNING,
                or_(
                    Explanation.lease_until.is_(None),
                    Explanation.lease_until < utcnow(),
                    Explanation.owner == self.replica_id,
                ),
            ),
        )

    def _claim(self, job_id: str) -> int | None:
        """Take the job (one conditional ``UPDATE``); the attempt number, or None if taken."""
        with self.db.session() as s:
            attempt = s.execute(
                update(Explanation)
                .where(
                    Explanation.id == job_id,
                    Explanation.attempts < MAX_ATTEMPTS,
                    self._claimable(),
                )
                .values(
                    status=RUNNING,
                    attempts=Explanation.attempts + 1,
                    owner=self.replica_id,
                    lease_until=self._lease_end(),
                    started_at=utcnow(),
                    # progress is kept: a retried job carries on from what it showed
                )
                .returning(Explanation.attempts)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if attempt is not None:
                return int(attempt)
            s.execute(
                update(Explanation)
                .where(
                    Explanation.id == job_id,
                    Explanation.attempts >= MAX_ATTEMPTS,
                    self._claimable(),
                )
                .values(
                    status=FAILED,
                    finished_at=utcnow(),
                    owner=None,
                    lease_until=None,
                    error=f"gave up after {MAX_ATTEMPTS} attempts: the server stopped each time",
                )
                .execution_options(synchronize_session=False)
            )
            return None

    def compute(self, job_id: str, attempt: int) -> JobOutcome:
        """Explain the job's transaction: its RESULT and pane blobs (the model work alone).

        Progress is written while ``attempt`` is still the job's current claim. Runs in this
        process, or in a Ray actor that holds its own runner on the same store.
        """
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
            explaining = _explaining_deployment(s, job, sub)
            settings = dict(job.settings)
            image_key = tx.image_blob
        image = decode_image(self.blobs.get(image_key), max_pixels=self.max_pixels)
        shared = settings.pop(REGIONS_SETTING, None)
        if shared is not None:
            settings["regions"] = self._shared_regions(str(shared))
        settings.pop(BACKGROUND_SETTING, None)
        learned = settings.pop(EXPLAINER_SETTING, None)
        if learned is not None:
            if self.explainers is None:
                raise RuntimeError("this runner has no explainers for method amortized")
            settings["explainer"] = self.explainers.load(str(learned))
        if self.models is None:
            raise RuntimeError("this runner has no models; it hands model work to its executor")
        deadline = Deadline(self.job_timeout)
        loaded = self.models.for_explanation(sub, dep, explaining)
        progress = self._progress_writer(job_id, attempt)
        model = loaded.model
        if isinstance(model, WorkerModel) and model.is_detector:
            return self._compute_box(job_id, image, model, settings, progress, deadline)
        if isinstance(model, WorkerModel) and settings.get("method") in GRADIENT_METHODS:
            # the gradients need the model's own tensors: the whole explanation runs inside
            left = deadline.left()
            exp = model.explain_inside(
                image, settings, progress=progress, timeout=left if left is not None else 1e9
            )
        else:

            def predict(x: np.ndarray) -> np.ndarray:
                # a stuck forward pass is stopped by the worker's own call limit; the job's
                # wait covers the queue as well
                return loaded.batcher.predict(x, timeout=deadline.left())

            exp = explain(image, model, predict=predict, progress=progress, **settings)
        result = exp.to_dict(image_refs=lambda ci, kind: pane_path(job_id, ci, kind))
        return result, self._store_panes(exp)

    def _store_panes(
        self, exp: Explained, draw: Callable[[bytes], bytes] | None = None
    ) -> dict[str, str]:
        """Store the explanation's panes (``draw`` over each but the region labels: a
        detector's box) and raw maps; their blob keys by ``class/kind``."""
        drawn: dict[tuple[int, str], str] = {}
        panes: dict[str, str] = {}
        for (ci, kind), source in exp.pane_keys():
            if source not in drawn:  # a pane shared by the classes is drawn once
                png = exp.png(*source)
                drawn[source] = self.blobs.put(draw(png) if draw and kind != LABELS else png)
            panes[f"{ci}/{kind}"] = drawn[source]
        for ci, values in exp.saliency.items():  # the raw map views are drawn from
            panes[attribution_key(ci)] = self.blobs.put(encode_map(values))
        return panes

    def _compute_box(
        self,
        job_id: str,
        image: np.ndarray,
        model: WorkerModel,
        settings: dict[str, Any],
        progress: Callable[[int, int], None],
        deadline: Deadline,
    ) -> JobOutcome:
        """Explain one box of a detector's transaction (:func:`limner.explain_detection`):
        its RESULT, with ``detection``, and its panes with the box drawn on them. The gradient
        methods run in the worker, where the detector's tensors are."""
        from limner.explain.detection import explain_box, outline_png

        settings.pop("top_k", None)
        if settings.get("method") in GRADIENT_METHODS:
            left = deadline.left()
            found = model.explain_inside(
                image, settings, progress=progress, timeout=left if left is not None else 1e9
            )
        else:
            found = explain_box(image, model.as_detector(), settings, progress=progress)
        panes = self._store_panes(found.explanation, lambda png: outline_png(png, found.target.box))
        result = found.to_dict(image_refs=lambda ci, kind: pane_path(job_id, ci, kind))
        return result, panes

    def _shared_regions(self, key: str) -> RegionMap:
        """The region map a comparison's explanations share (stored when it was asked)."""
        try:
            data = self.blobs.get(key)
        except (NotFoundError, OSError):
            raise NotFoundError("the regions this comparison shares are no longer stored") from None
        return load_regions(data)

    def _progress_writer(self, job_id: str, attempt: int) -> Callable[[int, int], None]:
        """Writes ``done / total`` at most every ``PROGRESS_INTERVAL`` seconds, never lower than
        what the job already shows (the engine's fraction only goes up; a retried attempt starts
        again from 0 and stays at the earlier attempt's figure until it passes it)."""
        last = [0.0]
        high = [0.0]

        def write(done: int, total: int) -> None:
            now = time.monotonic()
            if total <= 0:
                return
            fraction = min(0.99, done / total)
            if now - last[0] < PROGRESS_INTERVAL or fraction <= high[0]:
                return
            last[0] = now
            high[0] = fraction
            with self.db.session() as s:
                s.execute(
                    update(Explanation)
                    .where(
                        Explanation.id == job_id,
                        Explanation.status == RUNNING,
                        Explanation.attempts == attempt,
                        Explanation.progress < fraction,
                    )
                    .values(progress=fraction)
                    .execution_options(synchronize_session=False)
                )

        return write

    def _finish(
        self,
        job_id: str,
        attempt: int,
        status: str,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        panes: dict[str, str] | None = None,
    ) -> bool:
        """Record the outcome if ``attempt`` still holds the job; whether it did."""
        values: dict[str, Any] = {
            "status": status,
            "error": error,
            "result": result,
            "panes": panes or {},
            "finished_at": utcnow(),
            "lease_until": None,
        }
        if status == FINISHED:
            values["progress"] = 1.0
        with self.db.session() as s:
            done = s.execute(
                update(Explanation)
                .where(
                    Explanation.id == job_id,
                    Explanation.status == RUNNING,
                    Explanation.attempts == attempt,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                log.warning(
                    "explanation %s: attempt %d lost its claim; outcome dropped", job_id, attempt
                )
                return False
        return True
