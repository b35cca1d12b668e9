"""Explanation jobs on a Ray cluster (``LIMNER_EXECUTOR=ray``, extra ``limner[ray]``).

Each replica starts ``ray_actors`` :class:`JobWorker` actors on the cluster. An actor holds the
models (with ``num_gpus`` where the cluster has GPUs) and does the model work of a job against
the shared store: it reads the transaction, explains it, writes progress to the database and the
panes to the blob store. The replica keeps the claim, the lease and the outcome of the job, so
the store stays the one source of truth. An actor whose process dies is restarted by Ray and
its interrupted calls are retried (``max_restarts``, ``max_task_retries``); the replica's claim
holds meanwhile. If the replica dies, Ray ends its actors and another replica takes the job
once the lease expires.

Ray is imported only when this executor is built.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from limner.errors import LimnerError
from limner.jobs.executor import ThreadExecutor
from limner.settings import Settings

log = logging.getLogger("limner.jobs")


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`LimnerError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise LimnerError(
            "LIMNER_EXECUTOR=ray needs Ray: pip install 'limner[ray]' (on every machine)"
        ) from exc
    return ray


class JobWorker:
    """A Ray actor that does the model work of explanation jobs on the shared store."""

    def __init__(self, settings: Settings) -> None:
        from limner.jobs.models import ModelProvider
        from limner.jobs.runner import JobRunner
        from limner.store import Database
        from limner.store.blobs import open_blob_store

        self._db = Database(settings.resolved_database_url())
        models = ModelProvider.from_settings(settings)
        self._runner = JobRunner(
            self._db,
            open_blob_store(settings.resolved_blob_url()),
            models,
            None,
            max_pixels=settings.max_pixels,
        )

    def explain(self, job_id: str, attempt: int) -> dict[str, Any]:
        """``{"result", "panes"}`` of the job, or ``{"error"}`` when it cannot be explained."""
        try:
            result, panes = self._runner.compute(job_id, attempt)
        except LimnerError as exc:
            return {"error": exc.message}
        return {"result": result, "panes": panes}

    def pid(self) -> int:
        """The actor's process id (for operators and tests)."""
        return os.getpid()


class RayExecutor:
    """Jobs claimed by this replica, their model work done by Ray actors.

    ``submit`` runs the job function on a local pool of threads (one per job in flight: each
    waits on its actor); :meth:`explain` is where the runner hands over the model work.
    """

    def __init__(self, settings: Settings) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(
                address=settings.ray_address or None,
                namespace=settings.ray_namespace,
                ignore_reinit_error=True,
            )
        gpus = settings.ray_num_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        actor = ray.remote(JobWorker).options(
            num_cpus=settings.ray_actor_cpus,
            num_gpus=gpus,
            max_restarts=settings.ray_max_restarts,
            max_task_retries=settings.ray_max_restarts,
            max_concurrency=settings.workers,
        )
        self._actors = [actor.remote(settings) for _ in range(settings.ray_actors)]
        self._in_flight = [0] * len(self._actors)
        self._lock = threading.Lock()
        self._pool = ThreadExecutor(settings.workers * settings.ray_actors)

    def submit(self, fn: Callable[[str], None], job_id: str) -> None:
        """Run ``fn(job_id)`` (claim, hand over, record) on the local pool."""
        self._pool.submit(fn, job_id)

    def explain(self, job_id: str, attempt: int) -> tuple[dict[str, Any], dict[str, str]]:
        """Have the least busy actor explain the job; wait for its outcome."""
        with self._lock:
            i = min(range(len(self._actors)), key=self._in_flight.__getitem__)
            self._in_flight[i] += 1
        try:
            out = self._ray.get(self._actors[i].explain.remote(job_id, attempt))
        finally:
            with self._lock:
                self._in_flight[i] -= 1
        if "error" in out:
            raise LimnerError(out["error"])
        return out["result"], out["panes"]

    def actor_pids(self) -> list[int]:
        """Process ids of this replica's actors."""
        return list(self._ray.get([a.pid.remote() for a in self._actors]))

    def shutdown(self, wait: bool = True) -> None:
        """Stop the local pool and end this replica's actors."""
        self._pool.shutdown(wait=wait)
        for a in self._actors:
            try:
                self._ray.kill(a, no_restart=True)
            except Exception:  # already gone
                log.debug("ray actor already gone", exc_info=True)
        if self._owns_ray:
            self._ray.shutdown()
