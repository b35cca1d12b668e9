"""Model loads of deployments: a few at a time, each with a time limit, on threads of their own.

Loading a model (unpacking an upload, reading it, fetching a remote model's metadata) can take
long. It must not hold the threads that answer ``/healthz``, scoring and every other route, nor
pile up: at most ``model_loads`` run at once on a small pool of their own. A deploy that finds
every slot taken waits a moment, then gets 503 with ``Retry-After``. A load that runs past
``model_load_timeout`` fails its deploy. The load itself runs in a model worker process
(:mod:`limner.jobs.workers`) that is killed at the same limit, so the thread and its slot are
free again at once; what it loaded is closed and cleaned up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from limner.errors import LimnerError, ModelUnavailableError, ServiceBusyError

T = TypeVar("T")

#: Seconds a deploy waits for a free load slot before it is answered 503.
SLOT_WAIT = 2.0
#: Seconds a load past its limit is given for its worker's own error (the worker's clock
#: starts once the upload is unpacked and the process is up, a moment after the deploy's).
WORKER_GRACE = 2.0


class ModelLoads:
    """Runs model loads on a pool of ``max_concurrent`` threads with a time limit each."""

    def __init__(self, *, max_concurrent: int, timeout: float, slot_wait: float = SLOT_WAIT):
        self.timeout = timeout
        self.slot_wait = slot_wait
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="limner-load")

    async def run(
        self,
        load: Callable[[], T],
        *,
        discard: Callable[[T | None], None] | None = None,
    ) -> T:
        """``load()`` on the load pool; its result, or an error.

        Args:
            load: the work (unpack, check, load); runs on a load thread.
            discard: called on the load thread with the result (``None`` when ``load`` failed)
                when the caller has given up waiting (time limit, client gone), to close the
                model and remove its files.

        Raises:
            ServiceBusyError: every load slot stayed taken for ``slot_wait`` seconds (503).
            ModelUnavailableError: the load took longer than ``timeout`` seconds (503).
        """
        deadline = time.monotonic() + self.slot_wait
        while not self._slots.acquire(blocking=False):
            if time.monotonic() > deadline:
                raise ServiceBusyError(
                    "the server is loading as many models as it allows at once; retry shortly",
                    retry_after=max(1.0, min(self.timeout, 10.0)),
                )
            await asyncio.sleep(0.05)
        lock = threading.Lock()
        status: dict[str, object] = {"finished": False, "abandoned": False, "result": None}

        def work() -> T:
            result: T | None = None
            try:
                result = load()
                return result
            finally:
                self._slots.release()
                with lock:
                    status.update(finished=True, result=result)
                    abandoned = status["abandoned"]
                if abandoned and discard is not None:
                    discard(result)

        def give_up() -> None:
            with lock:
                status["abandoned"] = True
                finished = status["finished"]
            if finished and discard is not None:
                discard(status["result"])  # type: ignore[arg-type]

        try:
            future: Future[T] = self._pool.submit(work)
        except BaseException:
            self._slots.release()
            raise
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            # the worker holds the load to the same limit, from a moment later: its own error
            # says more (a model that loaded but never scored, say)
            grace = time.monotonic() + WORKER_GRACE
            while not future.done() and time.monotonic() < grace:
                await asyncio.sleep(0.05)
            if future.done() and future.exception() is not None:  # failed right at the limit
                own = future.exception()
                if isinstance(own, LimnerError):
                    raise own from None
                raise ModelUnavailableError(
                    f"the model did not load within {self.timeout:g} s"
                ) from None
            give_up()
            raise ModelUnavailableError(
                f"the model did not load within {self.timeout:g} s"
            ) from None
        except asyncio.CancelledError:  # the client went away
            give_up()
            raise

    def close(self) -> None:
        """Stop taking loads (running ones finish in the background)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
