"""Tenant models in contained worker processes: the service's side.

Every model the service serves (a deployment's or an external subscription's) is loaded and
called in a worker process of its own (:mod:`limner.jobs.sandbox` is the inside), never in the
API server. :class:`WorkerModel` is the proxy the service holds: a :class:`~limner.models.Model`
whose ``predict_tensor`` writes the batch into a shared-memory block, asks the worker, and
waits at most ``call_timeout`` seconds. A call that runs past it kills the worker (a forward
pass cannot be interrupted any other way) and fails with :class:`ModelTimeoutError`; the model
then rests for a moment (calls fail at once with 503) and the next call starts a fresh worker. A
worker that dies (a memory limit hit in native code) is replaced the same way. Batching across
callers is unchanged: the registry's :class:`~limner.jobs.batcher.Batcher` sits in front of the
proxy, so one worker runs one shared batch at a time.

Workers start from a fork server that has imported numpy, ONNX Runtime and limner's model
layer once, so a worker starts in well under a second and shares those pages with its siblings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from limner.errors import (
    InvalidInputError,
    ModelTimeoutError,
    ModelUnavailableError,
    ServiceBusyError,
)
from limner.jobs.sandbox import LoadSpec, WorkerLimits, serve
from limner.models import Model, ModelMetadata
from limner.models.detection import Detector

#: Modules the fork server imports once for every worker.
PRELOAD = ["numpy", "onnxruntime", "limner.models", "limner.models.onnx", "limner.jobs.sandbox"]
#: Smallest shared-memory block a model gets (it grows with the largest batch seen).
MIN_BLOCK = 4 * 1024 * 1024
#: Most seconds a model rests after its worker was killed for running past its time limit
#: (it rests twice the limit, so that an endless model burns a core a third of the time at most).
MAX_REST = 30.0
#: Niceness of a model's worker once one of its calls ran past its time limit: from then on
#: (until the model is loaded again) it gets the CPU only when nothing else wants it.
PENALTY_NICE = 19

_context_lock = threading.Lock()
_context: Any = None


def worker_context() -> Any:
    """The multiprocessing context workers start from (a fork server, preloaded)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


class WorkerGone(Exception):
    """The worker stopped (killed, crashed, or out of memory) before it answered."""


class WorkerLate(Exception):
    """The worker did not answer in time; it has been killed."""


class ModelWorker:
    """One worker process, its pipe and its private temporary folder."""

    def __init__(self, spec: LoadSpec, limits: WorkerLimits) -> None:
        """Start the worker and wait for its model to load.

        Raises:
            LimnerError: the model cannot be loaded (the worker's own error, e.g. a refusal).
            ModelUnavailableError: the load took longer than ``limits.load_timeout``, or the
                worker died while loading (a memory limit).
        """
        ctx = worker_context()
        self.tmp = tempfile.mkdtemp(prefix="limner-worker-")
        parent, child = ctx.Pipe()
        self.conn: Connection = parent
        self.process = ctx.Process(
            target=serve, args=(child, spec, limits, self.tmp), name="limner-model", daemon=True
        )
        self.process.start()
        child.close()
        checking: list[bool] = []  # the worker says when the model is loaded and checked

        def loaded(_done: int, _total: int) -> None:
            checking.append(True)

        try:
            self.info: dict[str, Any] = self.request(None, limits.load_timeout, loaded)
        except WorkerLate:
            if checking:
                raise ModelUnavailableError(
                    "the model loaded, but did not score two synthetic images within "
                    f"{limits.load_timeout:g} s (LIMNER_MODEL_LOAD_TIMEOUT): its forward "
                    "pass takes too long"
                ) from None
            raise ModelUnavailableError(
                f"the model did not load within {limits.load_timeout:g} s "
                "(LIMNER_MODEL_LOAD_TIMEOUT)"
            ) from None
        except WorkerGone:
            raise ModelUnavailableError(
                "the model's worker stopped while loading it: the model needs more memory than "
                "a worker may use (LIMNER_WORKER_MEMORY_BYTES), or it crashed"
            ) from None
        except BaseException:
            self.kill()
            raise

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.is_alive()

    def request(
        self,
        message: tuple[Any, ...] | None,
        timeout: float,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """Send ``message`` (None: only wait) and return the worker's answer.

        Raises:
            WorkerLate: no answer within ``timeout`` seconds (the worker is killed).
            WorkerGone: the worker stopped first.
            LimnerError: the worker's own error.
        """
        deadline = time.monotonic() + timeout
        try:
            if message is not None:
                self.conn.send(message)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.conn.poll(remaining):
                    self.kill()
                    raise WorkerLate
                kind, *rest = self.conn.recv()
                if kind == "progress":
                    if on_progress is not None:
                        on_progress(*rest)
                    continue
                if kind == "ok":
                    return rest[0]
                raise rest[0]
        except (EOFError, OSError, BrokenPipeError):
            self.kill()
            raise WorkerGone from None

    def kill(self) -> None:
        """Stop the worker at once and remove its temporary folder."""
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self) -> None:
        """Ask the worker to stop; kill it if it does not."""
        with contextlib.suppress(Exception):
            self.conn.send(("stop",))
            self.process.join(1)
        self.kill()


class WorkerModel(Model):
    """A model that is loaded and run in a contained worker; the service holds this proxy."""

    def __init__(self, spec: LoadSpec, limits: WorkerLimits) -> None:
        """Load ``spec`` in a new worker (blocks up to ``limits.load_timeout``)."""
        self.spec = spec
        self.limits = limits
        self._lock = threading.Lock()
        self._worker: ModelWorker | None = ModelWorker(spec, limits)
        info = self._worker.info
        #: A detector's ``limner-model.json`` (None for a classifier): it is called with
        #: :meth:`detect`, and has no class probabilities.
        self.detection: dict[str, Any] | None = None
        if info.get("kind") == "detector":
            from limner.models.onnx_detector import detector_metadata

            self.detection = dict(info["metadata"])
            meta = detector_metadata(self.detection)[0]
        else:
            meta = ModelMetadata.from_dict(info["metadata"])
        super().__init__(meta, name=info["name"])
        self.preferred_batch_size = int(info["preferred_batch_size"])
        #: How much the worker's resident memory grew while loading the model, in bytes.
        self.loaded_bytes = int(info["loaded_bytes"])
        self._block: shared_memory.SharedMemory | None = None
        self._rest_until = 0.0
        self._closed = False
        #: Set once a call ran past its limit: later workers run at ``PENALTY_NICE``.
        self._penalized = False

    @property
    def is_detector(self) -> bool:
        """Whether the worker holds an object detector."""
        return self.detection is not None

    def detect(self, images: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """A detector's detections of uint8 images at its input size, computed by the worker:
        per image, ``xyxy`` pixel boxes, scores, labels (and class scores where given)."""
        if self.detection is None:
            raise InvalidInputError(f"{self.name} is a classifier, not an object detector")
        x = np.ascontiguousarray(images, dtype=np.uint8)
        if x.shape[0] == 0:
            return []
        return list(self._through_block("detect", x))

    def as_detector(self) -> Detector:
        """This worker's detector, as a :class:`~limner.models.detection.Detector` whose
        calls go to the worker (what :func:`limner.explain_detection` takes)."""
        if self.detection is None:
            raise InvalidInputError(f"{self.name} is a classifier, not an object detector")
        return Detector(
            self.detect, self.labels, self.input_size, name=self.name, metadata=self.detection
        )

    def predict_tensor(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a preprocessed batch, computed by the worker."""
        if self.detection is not None:
            raise InvalidInputError(
                f"{self.name} is an object detector: it gives boxes, not class probabilities"
            )
        x = np.ascontiguousarray(x)
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return np.asarray(self._through_block("predict", x), dtype=np.float32)

    def _through_block(self, op: str, x: np.ndarray) -> Any:
        """Write ``x`` into the shared-memory block and ask the worker to ``op`` it."""
        with self._lock:
            worker = self._live_worker()
            block = self._block_for(x.nbytes)
            view: np.ndarray = np.ndarray(x.shape, dtype=x.dtype, buffer=block.buf)
            view[...] = x
            del view
            message = (op, block.name, x.shape, x.dtype.str)
            return self._call(worker, message, self.limits.call_timeout)

    def _forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - predict_tensor is used
        return self.predict_tensor(x)

    def explain_inside(
        self,
        image: np.ndarray,
        settings: dict[str, Any],
        *,
        progress: Callable[[int, int], None] | None,
        timeout: float,
    ) -> Any:
        """Run a whole explanation in the worker (for methods that need the model's tensors)."""
        with self._lock:
            worker = self._live_worker()
            return self._call(worker, ("explain", image, settings), timeout, progress)

    def check_method(self, method: str, *, steps: int | None, layer: str | None) -> None:
        """Refuse (422) a method this model cannot be explained with (checked in the worker
        for the gradient methods, which need the model's module)."""
        from limner.explain.detection import check_detection_method
        from limner.explain.engine import check_method
        from limner.explain.methods import GRADIENT_METHODS

        if method not in GRADIENT_METHODS:
            if self.is_detector:
                check_detection_method(self.as_detector(), method, steps=steps, layer=layer)
            else:
                check_method(self, method, steps=steps, layer=layer)
            return
        with self._lock:
            worker = self._live_worker()
            self._call(worker, ("check", method, steps, layer), self.limits.call_timeout)

    def _call(
        self,
        worker: ModelWorker,
        message: tuple[Any, ...],
        timeout: float,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        try:
            return worker.request(message, timeout, progress)
        except WorkerLate:
            self._worker = None
            self._rest_until = time.monotonic() + min(2 * timeout, MAX_REST)
            self._penalized = True
            raise ModelTimeoutError(
                f"the model did not answer within {timeout:g} s (its time limit: "
                "LIMNER_MODEL_CALL_TIMEOUT, or LIMNER_JOB_TIMEOUT for an explanation); the call "
                "was stopped"
            ) from None
        except WorkerGone:
            self._worker = None
            if self._closed:
                raise ModelUnavailableError("the model was unloaded; retry the request") from None
            raise ModelUnavailableError(
                "the model's worker stopped while it ran: the model needs more memory than a "
                "worker may use (LIMNER_WORKER_MEMORY_BYTES), or it crashed; the next call "
                "starts it again"
            ) from None

    def _live_worker(self) -> ModelWorker:
        if self._closed:
            raise ModelUnavailableError("the model was unloaded; retry the request")
        if self._worker is not None and self._worker.alive:
            return self._worker
        rest = self._rest_until - time.monotonic()
        if rest > 0:
            raise ServiceBusyError(
                "the model's last call ran past its time limit; it rests for "
                f"{rest:.0f} s before it is started again",
                retry_after=max(1.0, round(rest)),
            )
        if self._worker is not None:
            self._worker.kill()
            self._worker = None
        limits = self.limits
        if self._penalized:
            limits = dataclasses.replace(limits, nice=max(limits.nice, PENALTY_NICE))
        self._worker = ModelWorker(self.spec, limits)
        return self._worker

    def _block_for(self, nbytes: int) -> shared_memory.SharedMemory:
        if self._block is not None and self._block.size >= nbytes:
            return self._block
        self._release_block()
        self._block = shared_memory.SharedMemory(create=True, size=max(MIN_BLOCK, nbytes))
        return self._block

    def _release_block(self) -> None:
        if self._block is not None:
            with contextlib.suppress(Exception):
                self._block.close()
            with contextlib.suppress(Exception):
                self._block.unlink()
            self._block = None

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when no worker runs)."""
        worker = self._worker
        return worker.process.pid if worker is not None and worker.alive else None

    def close(self) -> None:
        """Stop the worker and free its memory (a call in flight fails)."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()
        if self._lock.acquire(timeout=5):
            try:
                self._release_block()
            finally:
                self._lock.release()
