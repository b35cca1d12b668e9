"""The inside of a model worker: the process that loads and runs one tenant model.

The service never loads a tenant's model in its own process. A worker starts from a small
fork server, contains itself (:func:`contain`: memory, file-size and file-count limits, a lower
CPU priority, a private temporary folder, the Hugging Face Hub switched off and, for a model
that is not a URL, no network at all), loads the model that its :class:`LoadSpec` names, says
what it loaded, and then answers requests from the service over a pipe, one at a time:

- ``("predict", shm_name, shape, dtype)``: probabilities for the tensor the service wrote into
  the shared-memory block ``shm_name`` (the batch never travels through the pipe);
- ``("detect", shm_name, shape, dtype)``: an object detector's detections of the uint8 images in
  the block, per image its boxes, scores and labels (small arrays, through the pipe);
- ``("explain", image, settings)``: a whole explanation run here (the gradient methods, which
  need the model's own tensors; a detector's, of the box the settings name), with
  ``("progress", done, total)`` messages on the way;
- ``("check", method, steps, layer)``: whether the model can be explained so;
- ``("stop",)``.

Each answer is ``("ok", value)`` or ``("error", exception)``. What a worker cannot survive (a
memory limit hit inside native code, a forward pass that never ends) is the service's to deal
with: it kills the worker and starts another (:mod:`limner.jobs.workers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import resource
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from limner.errors import LimnerError, ModelError
from limner.models.metadata import plain_text

log = logging.getLogger("limner.jobs")

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class WorkerLimits:
    """What one worker may use (settings ``LIMNER_WORKER_*``)."""

    #: Address space of the worker (``RLIMIT_AS``), in bytes; 0: no limit.
    memory_bytes: int = 0
    #: Largest file the worker may write (``RLIMIT_FSIZE``), in bytes; 0: no limit.
    file_bytes: int = 0
    #: Files the worker may hold open at once (``RLIMIT_NOFILE``).
    open_files: int = 256
    #: Niceness added to the worker, so that the API server wins the CPU over models.
    nice: int = 5
    #: Seconds the worker may take to start and load its model.
    load_timeout: float = 60.0
    #: Seconds one call (a forward pass) may take before the worker is killed.
    call_timeout: float = 30.0


@dataclass(frozen=True)
class LoadSpec:
    """What a worker loads: everything it needs, picklable (it crosses a process boundary)."""

    #: A built-in name, a path, or an ``http(s)://`` URL.
    spec: str
    device: str = "cpu"
    #: Full metadata (``labels`` present) or hints merged over what the model tells.
    metadata: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    #: ``LIMNER_ALLOWED_URLS`` for a URL model; None: an unguarded client (the CLI's own).
    allowed_urls: str | None = None
    #: Seconds a remote call may take in all.
    timeout: float = 60.0
    #: Check the artifact against the tenant policy (:mod:`limner.models.policy`) first.
    tenant: bool = False
    #: The folder of an upload: its path is cut out of error messages.
    folder: str | None = None
    #: Input name of a remote model (external subscriptions send ``image``).
    input_name: str | None = None
    #: Whether :attr:`metadata` is complete (labels known): used as is, not merged.
    full_metadata: bool = False
    #: What the model is called where its metadata names nothing (a deployment's name).
    name: str | None = None
    #: Check the loaded model against its metadata and score synthetic images with it before
    #: answering (a deployment being created: a mismatch is a 422 naming the field); the
    #: worker says ``("progress", 1, 2)`` when the model is loaded and the check begins.
    verify: bool = False

    @property
    def is_url(self) -> bool:
        """Whether the model is called over the network."""
        return self.spec.startswith(("http://", "https://"))

    def load(self) -> Any:
        """Check and load the model (in the worker): a classifier, or an object detector
        (:class:`~limner.models.detection.Detector`) where its metadata says so."""
        from limner.models import ModelMetadata, load_model
        from limner.models.detectors import detector_metadata_for, load_detector

        if self.tenant:
            from limner.models.policy import check_tenant_model

            check_tenant_model(Path(self.spec))
        client = None
        if self.is_url and self.allowed_urls is not None:
            from limner.net import UrlPolicy, guarded_client

            client = guarded_client(UrlPolicy.parse(self.allowed_urls), timeout=self.timeout)
        detection = detector_metadata_for(self.spec, self.metadata)
        if detection is not None:
            return load_detector(
                self.spec, detection, name=self.name, client=client, headers=self.headers
            )
        if self.input_name is not None:
            from limner.models.remote import RemoteModel

            remote = RemoteModel(
                self.spec,
                ModelMetadata.from_dict(self.metadata or {}),
                input_name=self.input_name,
                headers=self.headers,
                client=client,
            )
            return remote
        meta: Any = self.metadata
        if self.metadata is not None and self.full_metadata:
            meta = ModelMetadata.from_dict(self.metadata)
        return load_model(
            self.spec,
            device=self.device,
            metadata=meta,
            headers=self.headers,
            client=client,
            name=self.name,
        )

    def scrub(self, text: str) -> str:
        """``text`` without the server folder of the upload, and as one plain line (no
        terminal escape codes: libraries such as Keras colour their messages)."""
        if self.folder:
            text = text.replace(self.folder.rstrip("/") + "/", "").replace(self.folder, ".")
        return plain_text(text)


def contain(limits: WorkerLimits, tmp: Path, *, network: bool) -> None:
    """Apply the worker's limits to this process (called first thing in the worker)."""
    for name, value in (
        ("RLIMIT_AS", limits.memory_bytes),
        ("RLIMIT_FSIZE", limits.file_bytes),
        ("RLIMIT_NOFILE", limits.open_files),
        ("RLIMIT_CORE", 0),
    ):
        if value or name == "RLIMIT_CORE":
            _lower(getattr(resource, name), value)
    with contextlib.suppress(OSError):
        os.nice(limits.nice)
    tmp.mkdir(parents=True, exist_ok=True)
    for var in ("TMPDIR", "TEMP", "TMP"):
        os.environ[var] = str(tmp)
    import tempfile

    tempfile.tempdir = str(tmp)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.chdir(tmp)
    if not network:
        _leave_network()


def _lower(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(which, (value, value))


def _leave_network() -> bool:
    """Move into a network namespace of its own (no interfaces up: nothing can be reached).

    Needs user namespaces; where the host forbids them the worker keeps the host's network
    (its model cannot open sockets anyway: see docs/security.md).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0)
    except (OSError, AttributeError):
        return False


def rss_bytes() -> int:
    """Anonymous resident memory of this process (what its data takes, not its libraries)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def describe(model: Any, loaded_bytes: int) -> dict[str, Any]:
    """What the service needs to know of a loaded model (``kind``: ``classifier`` or
    ``detector``; a detector's ``metadata`` is its ``limner-model.json``)."""
    from limner.models.detection import Detector

    if isinstance(model, Detector):
        return {
            "kind": "detector",
            "metadata": model.metadata,
            "name": model.name,
            "preferred_batch_size": 8,
            "loaded_bytes": int(loaded_bytes),
        }
    return {
        "kind": "classifier",
        "metadata": model.metadata.to_dict(),
        "name": model.name,
        "preferred_batch_size": int(model.preferred_batch_size),
        "loaded_bytes": int(loaded_bytes),
    }


def serve(conn: Connection, spec: LoadSpec, limits: WorkerLimits, tmp: str) -> None:
    """The worker's main function: contain, load, then answer requests until told to stop."""
    contain(limits, Path(tmp), network=spec.is_url)
    try:
        before = rss_bytes()
        model = spec.load()
        loaded = max(0, rss_bytes() - before)
        if spec.verify:
            from limner.models.checks import verify_model
            from limner.models.detection import Detector
            from limner.models.detectors import verify_detector

            conn.send(("progress", 1, 2))
            if isinstance(model, Detector):
                verify_detector(model)
            else:
                verify_model(model)
        conn.send(("ok", describe(model, loaded)))
    except BaseException as exc:
        conn.send(("error", _portable(exc, spec)))
        return
    blocks: dict[str, shared_memory.SharedMemory] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        op = message[0]
        if op == "stop":
            return
        try:
            if op == "predict":
                _, name, shape, dtype = message
                block = blocks.get(name) or _attach(name, blocks)
                x = np.ndarray(shape, dtype=np.dtype(dtype), buffer=block.buf)
                conn.send(("ok", model.predict_tensor(x)))
                del x
            elif op == "detect":
                from limner.models.detectors import as_arrays

                _, name, shape, dtype = message
                block = blocks.get(name) or _attach(name, blocks)
                images = np.array(np.ndarray(shape, dtype=np.dtype(dtype), buffer=block.buf))
                conn.send(("ok", as_arrays(model.detect(images))))
                del images
            elif op == "explain":
                _, image, settings = message
                conn.send(("ok", _explain(conn, model, image, settings)))
            elif op == "check":
                _, method, steps, layer = message
                _check(model, method, steps, layer)
                conn.send(("ok", None))
            else:
                conn.send(("error", ModelError(f"unknown worker request {op!r}")))
        except BaseException as exc:
            conn.send(("error", _portable(exc, spec)))


def _attach(name: str, blocks: dict[str, shared_memory.SharedMemory]) -> Any:
    for old in blocks.values():  # the service grew its block: the old one is gone
        with contextlib.suppress(Exception):
            old.close()
    blocks.clear()
    # the service created the block and unlinks it (the fork server's workers share its
    # resource tracker, so attaching registers nothing new)
    block = shared_memory.SharedMemory(name=name)
    blocks[name] = block
    return block


def _check(model: Any, method: str, steps: int | None, layer: str | None) -> None:
    from limner.explain.detection import check_detection_method
    from limner.explain.engine import check_method
    from limner.models.detection import Detector

    if isinstance(model, Detector):
        check_detection_method(model, method, steps=steps, layer=layer)
    else:
        check_method(model, method, steps=steps, layer=layer)


def _explain(conn: Connection, model: Any, image: np.ndarray, settings: dict[str, Any]) -> Any:
    """A whole explanation (a detector's: of the box the settings name)."""
    from limner.explain import explain
    from limner.explain.detection import explain_box
    from limner.models.detection import Detector

    def progress(done: int, total: int) -> None:
        conn.send(("progress", done, total))

    if isinstance(model, Detector):
        return explain_box(image, model, settings, progress=progress)
    return explain(image, model, progress=progress, **settings)


#: How native code (ONNX Runtime, torch) says an allocation failed under the worker's limit.
_OUT_OF_MEMORY = ("std::bad_alloc", "Failed to allocate memory", "DefaultCPUAllocator: can't")


def _portable(exc: BaseException, spec: LoadSpec) -> LimnerError:
    """The error as the service should see it: a :class:`LimnerError` that pickles, with no
    server path in its message."""
    if isinstance(exc, MemoryError) or any(m in str(exc) for m in _OUT_OF_MEMORY):
        return ModelError(
            "the model ran out of memory: it needs more than a model worker may use "
            "(LIMNER_WORKER_MEMORY_BYTES)"
        )
    if isinstance(exc, LimnerError):
        exc.args = (spec.scrub(exc.message), *exc.args[1:])
        exc.message = spec.scrub(exc.message)
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            return _plain(exc, spec)
    text = spec.scrub(f"{type(exc).__name__}: {exc}")
    return ModelError(f"the model failed: {text}")


def _plain(exc: LimnerError, spec: LoadSpec) -> LimnerError:
    err = ModelError(spec.scrub(exc.message))
    err.status = exc.status
    err.code = exc.code
    return err
