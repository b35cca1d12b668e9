"""Where explanation jobs run.

Routes and the job runner only see :class:`Executor`; the in-process thread pool is the default.
An executor for a cluster (:mod:`limner.jobs.ray_executor`) implements the same two methods and
:class:`RemoteJobs` as well: the runner then keeps the claim, lease and outcome of a job in this
process and hands the model work to the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("limner.jobs")


class Executor(Protocol):
    """Runs job functions in the background."""

    def submit(self, fn: Callable[[str], None], job_id: str) -> None:
        """Run ``fn(job_id)`` some time soon; never block the caller."""
        ...

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait``, finish the running ones first."""
        ...


@runtime_checkable
class RemoteJobs(Protocol):
    """Runs the model work of a claimed job elsewhere (a Ray actor) and returns its outcome."""

    def explain(self, job_id: str, attempt: int) -> tuple[dict[str, Any], dict[str, str]]:
        """The RESULT and pane blobs of job ``job_id`` under claim ``attempt``; blocks.

        Raises :class:`~limner.errors.LimnerError` when the job cannot be explained.
        """
        ...


class ThreadExecutor:
    """An in-process pool of ``workers`` threads."""

    def __init__(self, workers: int = 4) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="limner-job")

    def submit(self, fn: Callable[[str], None], job_id: str) -> None:
        """Queue ``fn(job_id)`` on the pool."""
        self._pool.submit(_logged, fn, job_id)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool (queued jobs stay queued in the store and run after a restart)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


def _logged(fn: Callable[[str], None], job_id: str) -> None:
    try:
        fn(job_id)
    except Exception:  # a job's own errors are recorded by the runner; this is a last resort
        log.exception("job %s crashed", job_id)
