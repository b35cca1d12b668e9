"""Dynamic batching: concurrent callers of one model share its forward passes.

Callers hand in batches of images and wait; one worker thread per model takes everything that
queued up while the previous forward pass ran, runs it as one batch (up to ``max_batch`` images),
and hands each caller its rows back. A lone caller pays nothing extra: no timer, no waiting.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from limner.errors import ModelTimeoutError

PredictFn = Callable[[np.ndarray], np.ndarray]


class Batcher:
    """Merge concurrent ``predict`` calls on one model into shared batches."""

    def __init__(self, predict: PredictFn, *, max_batch: int = 64, name: str = "model") -> None:
        self._predict = predict
        self.max_batch = max(1, int(max_batch))
        self._queue: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        #: Forward passes run and images scored (for metrics and tests).
        self.batches = 0
        self.images = 0
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def predict(self, images: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """The wrapped predict function's answer for ``images``, in batches shared with others.

        ``timeout``: seconds to wait in all (queued and scored); past it the call is dropped
        from the queue (if it has not started) and fails with :class:`ModelTimeoutError`.
        """
        images = np.asarray(images)
        if images.shape[0] == 0:
            return self._predict(images)
        fut: Future[np.ndarray] = Future()
        with self._cond:
            if self._closed:  # unloaded while a caller still holds it: score directly
                return self._predict(images)
            self._queue.append((images, fut))
            self._cond.notify()
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise ModelTimeoutError(
                f"the model did not answer within {timeout:g} s; the call was abandoned"
            ) from None

    def _take(self) -> list[tuple[np.ndarray, Future[np.ndarray]]]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            taken: list[tuple[np.ndarray, Future[np.ndarray]]] = []
            rows = 0
            while self._queue:
                n = len(self._queue[0][0])
                if taken and rows + n > self.max_batch:
                    break
                taken.append(self._queue.popleft())
                rows += n
            return taken

    def _loop(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                return
            self._run(taken)

    def _run(self, taken: list[tuple[np.ndarray, Future[np.ndarray]]]) -> None:
        taken = [t for t in taken if t[1].set_running_or_notify_cancel()]  # drop abandoned calls
        if not taken:
            return
        shapes = {t[0].shape[1:] for t in taken}
        groups = [taken] if len(shapes) == 1 else [[t] for t in taken]
        for group in groups:
            try:
                batch = group[0][0] if len(group) == 1 else np.concatenate([g[0] for g in group])
                out = self._predict(batch)
            except BaseException as exc:  # the callers get the error, the worker lives on
                for _, fut in group:
                    fut.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            start = 0
            for images, fut in group:
                fut.set_result(out[start : start + len(images)])
                start += len(images)

    def close(self) -> None:
        """Stop the worker once the queued calls are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
