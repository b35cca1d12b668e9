"""Remote models that speak the Open Inference (KServe v2) protocol over HTTP.

One persistent HTTP client (kept-alive connections) per model. Tensors travel in the binary
tensor extension when the server lists ``binary_tensor_data`` in ``GET /v2`` or answers a
binary request; otherwise as JSON. A batch bigger than ``request_batch`` is split into requests
sent ``concurrency`` at a time, so the server computes one while the next is on the wire.

Every request is held to the model's ``timeout`` in all (connecting and the whole answer, not
per read) and its answer to a byte cap (:data:`MAX_REMOTE_METADATA_BYTES` for metadata, at most
:data:`MAX_REMOTE_ANSWER_BYTES` for scores, less for a small batch), read as it streams in; a
request past either is abandoned (:func:`limner.net.read_bounded`).
"""

from __future__ import annotations

import json
import threading
import time
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
from pydantic import ValidationError

from limner.errors import LimnerError, ModelError, ModelUnavailableError
from limner.models.base import Model
from limner.models.metadata import InputSpec, ModelMetadata, Signature, with_hints
from limner.models.remote_metadata import (
    ServerDescription,
    describe,
    published_signature,
    resolve_metadata,
)
from limner.net import Answer, AnswerRefusedError, DeadlineExceededError, read_bounded
from limner.protocol import (
    DATATYPE_OF,
    HEADER_LENGTH,
    ResponseOutput,
    decode_value,
    pack_binary,
    to_raw,
    unpack_binary,
)

#: The server-metadata extension name of the binary tensor encoding.
EXTENSION = "binary_tensor_data"

_REFUSED_BINARY = (400, 413, 415, 422, 500)
#: Tensor bytes per request: binary bodies carry them as they are, JSON about 4× as text. Small
#: requests (16 images of 224×224) sent two at a time keep the server busy while the next one
#: is built and sent: against 64-image requests, 1.34× the local time instead of 1.7×.
BINARY_BYTES = 2 * 1024 * 1024 + 512 * 1024
JSON_BYTES = 3 * 1024 * 1024
#: Images in the batch on which binary and JSON are timed against each other.
COMPARE_ROWS = 8
#: Most bytes of one scoring answer, whatever the batch (64 MiB).
MAX_REMOTE_ANSWER_BYTES = 64 * 1024 * 1024
#: Most bytes of a metadata answer (``GET /v2/models/NAME``, ``GET /v2``): room for the most
#: labels limner takes (:data:`limner.models.metadata.MAX_CLASSES`) at 160 characters each.
MAX_REMOTE_METADATA_BYTES = 16 * 1024 * 1024
#: A scoring answer of ``rows`` images and ``classes`` scores may have ``rows × classes ×``
#: this many bytes (JSON writes a float in at most 25: room for a second output too) plus
#: :data:`ANSWER_SLACK_BYTES`, at most :data:`MAX_REMOTE_ANSWER_BYTES`.
ANSWER_BYTES_PER_SCORE = 64
ANSWER_SLACK_BYTES = 4 * 1024 * 1024
#: Seconds one request may take in all when neither the model nor its client says.
DEFAULT_TIMEOUT = 60.0


def raw_pixels_spec(width: int, height: int) -> InputSpec:
    """An input spec that sends uint8 NHWC pixels as they are (what limner's own server takes)."""
    return InputSpec(width=width, height=height, layout="NHWC", dtype="uint8", scale=1.0)


class OpenInferenceModel(Model):
    """What the HTTP and gRPC remote models share: the metadata from what the server publishes
    and the user's hints, and the tensor names to use."""

    url: str
    _input_name: str = "image"
    _output_name: str | None = None
    _request_batch: int = 64
    _pool: ThreadPoolExecutor

    @abstractmethod
    def _describe(self) -> ServerDescription:
        """What the server publishes about the model."""

    @abstractmethod
    def _infer(self, x: np.ndarray) -> np.ndarray:
        """One request: a model-ready tensor in, the chosen output out."""

    def _resolve(
        self, metadata: ModelMetadata | None, hints: dict[str, Any] | None, input_name: str | None
    ) -> ModelMetadata:
        """The model's metadata (asking the server only for what is not given); sets the input
        and output names on the way."""
        self._input_name = input_name or "image"
        self._description: ServerDescription | None = None
        if metadata is None or input_name is None:
            desc = self._description = self._describe()
            self._input_name = input_name or desc.input_name or "image"
            self._output_name = desc.output_name
        if metadata is None:
            metadata = resolve_metadata(desc, hints, self.url, self._count_outputs)
        else:
            metadata = with_hints(metadata, hints)
        self._input_name = str(metadata.extra.get("input_name") or self._input_name)
        self._output_name = metadata.extra.get("output_name") or self._output_name
        return metadata

    def signature(self) -> Signature:
        """What the server publishes of the model's tensors (fixed input size, layout, element
        type, output count); empty when it was not asked."""
        return published_signature(getattr(self, "_description", None))

    def _start_pool(self, request_batch: int, concurrency: int, thread_name: str) -> None:
        """Requests of at most ``request_batch`` images, sent ``concurrency`` at a time."""
        self._request_batch = max(1, request_batch)
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix=thread_name)

    def close(self) -> None:
        """Stop the request threads (a subclass closes its connection too)."""
        self._pool.shutdown(wait=False)

    def _request_bytes(self) -> int:
        """Tensor bytes one request may carry."""
        return BINARY_BYTES

    def _rows(self, x: np.ndarray, budget: int) -> int:
        """Images per request: ``request_batch``, fewer when they would pass ``budget`` bytes."""
        per_row = max(1, x[:1].nbytes)
        return max(1, min(self._request_batch, budget // per_row))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """One request, or requests of :meth:`_rows` images sent ``concurrency`` at a time."""
        step = self._rows(x, self._request_bytes())
        if len(x) <= step:
            return self._infer(x)
        parts = list(self._pool.map(self._infer, [x[s : s + step] for s in range(0, len(x), step)]))
        return np.concatenate(parts)

    def _pick(self, names: list[str]) -> int:
        """Which of the answer's outputs to read: the model's named output, else
        ``probability``, else the first."""
        wanted = [self._output_name, "probability"]
        return next((i for name in wanted for i, n in enumerate(names) if n == name), 0)

    def _count_outputs(self, input_settings: dict[str, Any]) -> int:
        """How many scores the model answers for one black image (its class count)."""
        probe = ModelMetadata.from_dict({"labels": ["a", "b"], "input": input_settings})
        x = probe.input.preprocess(
            np.zeros((1, probe.input.height, probe.input.width, 3), np.uint8)
        )
        out = self._infer(x)
        return int(np.prod(out.shape[1:])) if out.ndim > 1 else 1


class RemoteModel(OpenInferenceModel):
    """A classifier behind ``http(s)://host/v2/models/NAME``.

    Args:
        url: the model's Open Inference URL.
        metadata: complete metadata (nothing is asked of the server but the input name).
        hints: the fields the server does not publish (labels, input size and settings,
            output kind), any subset of a ``limner-model.json``; see
            :func:`limner.models.remote_metadata.resolve_metadata`.
        headers: HTTP headers sent with every request (an ``Authorization`` key, say).
        timeout: seconds one request may take in all, connecting and reading the whole answer
            (default: the client's read timeout, else 60); past them it is abandoned.
        client: the HTTP client to call through (the service passes one that reaches only
            allowed addresses, :func:`limner.net.guarded_client`); default a plain one. The
            model owns it: :meth:`close` closes it.
        binary: force the binary tensor extension on (True) or off (False); default: decided
            from the server.
        quote_errors: put the server's error message in limner's errors (default: only with
            the model's own client; the service's guarded client hides what an allowed host
            answers, so a tenant cannot read another host's pages through error messages).
    """

    preferred_batch_size = 128

    def __init__(
        self,
        url: str,
        metadata: ModelMetadata | None = None,
        *,
        hints: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        input_name: str | None = None,
        client: httpx.Client | None = None,
        binary: bool | None = None,
        request_batch: int = 64,
        concurrency: int = 2,
        quote_errors: bool | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._quote = client is None if quote_errors is None else quote_errors
        self._headers = dict(headers or {})
        if timeout is None:
            timeout = (client.timeout.read if client is not None else None) or DEFAULT_TIMEOUT
        self._seconds = float(timeout)
        self._client = client or httpx.Client(timeout=self._seconds)
        self._binary = binary
        self._probe_lock = threading.Lock()
        self._start_pool(request_batch, concurrency, "limner-remote")
        try:
            metadata = self._resolve(metadata, hints, input_name)
            if self._binary is None and self._server_lists_binary():
                self._binary = True
        except BaseException:
            self.close()
            raise
        super().__init__(metadata, name=metadata.name)

    # --- talking to the server ----------------------------------------------------------------

    def _send(self, method: str, url: str, *, max_bytes: int, **kwargs: Any) -> Answer:
        """One request, its answer read whole: at most ``max_bytes`` (a 2xx answer beyond is a
        :class:`ModelError`), within the model's timeout in all (else
        :class:`ModelUnavailableError`; the request is abandoned either way)."""
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            return read_bounded(
                self._client,
                method,
                url,
                seconds=self._seconds,
                max_bytes=max_bytes,
                headers=headers,
                **kwargs,
            )
        except DeadlineExceededError as exc:
            raise ModelUnavailableError(
                f"{self.url}: no whole answer within {self._seconds:g} s (the request was "
                "abandoned)"
            ) from exc
        except AnswerRefusedError as exc:
            raise ModelError(f"{self.url}: {exc} (the request was abandoned)") from exc
        except httpx.HTTPError as exc:
            raise ModelUnavailableError(f"{self.url}: cannot be reached ({exc})") from exc

    def _answer_cap(self, rows: int) -> int:
        """Most bytes of the answer to a request of ``rows`` images (see
        :data:`ANSWER_BYTES_PER_SCORE`); the most for any batch while the classes are unknown."""
        metadata: ModelMetadata | None = getattr(self, "metadata", None)
        if metadata is None:
            return MAX_REMOTE_ANSWER_BYTES
        scores = max(1, rows) * max(2, len(metadata.labels))
        return min(MAX_REMOTE_ANSWER_BYTES, ANSWER_SLACK_BYTES + scores * ANSWER_BYTES_PER_SCORE)

    def _describe(self) -> ServerDescription:
        resp = self._send("GET", self.url, max_bytes=MAX_REMOTE_METADATA_BYTES)
        if resp.status_code != 200:
            raise ModelError(f"{self.url}: metadata request {self._answer(resp)}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise ModelError(f"{self.url}: not an Open Inference model endpoint") from exc
        return describe(body, self.url)

    def _server_lists_binary(self) -> bool:
        root = self.url.split("/v2/models/", 1)[0] + "/v2" if "/v2/models/" in self.url else None
        if root is None:
            return False
        try:
            resp = self._send("GET", root, max_bytes=MAX_REMOTE_METADATA_BYTES)
            extensions = resp.json().get("extensions") if resp.status_code == 200 else None
        except (LimnerError, ValueError, AttributeError):
            return False
        return isinstance(extensions, list) and EXTENSION in extensions

    def _request_bytes(self) -> int:
        return BINARY_BYTES if self._binary is not False else JSON_BYTES

    def _infer(self, x: np.ndarray) -> np.ndarray:
        if self._binary is None:
            with self._probe_lock:  # one request finds out; the others follow its answer
                if self._binary is None:
                    return self._probe_binary(x)
        if self._binary:
            return self._checked(self._post_binary(x))
        return self._infer_json(x)

    def _infer_json(self, x: np.ndarray) -> np.ndarray:
        # _forward already split x to at most JSON_BYTES (JSON is about 4× the tensor as text)
        return self._checked(self._post_json(x))

    def _checked(self, resp: Answer) -> np.ndarray:
        if resp.status_code != 200:
            raise ModelError(f"{self.url}: scoring {self._answer(resp)}")
        return self._read_output(resp)

    def _probe_binary(self, x: np.ndarray) -> np.ndarray:
        """Send binary to a server that lists no extension; fall back to JSON if refused.

        When it answers both, the first batch of at least :data:`COMPARE_ROWS` images goes
        once as JSON too and the faster encoding stays: some servers decode binary tensors
        slower than JSON (KServe turns them into Python lists element by element).
        """
        try:
            start = time.perf_counter()
            resp: Answer | None = self._post_binary(x)
            binary_s = time.perf_counter() - start
        except ModelUnavailableError as exc:
            # some servers drop the connection on what they cannot parse (a server that is
            # down fails the JSON try too); one that ran out of time gets no second try
            if _timed_out(exc):
                raise
            resp = None
        if resp is not None and resp.status_code == 200:
            out = self._read_output(resp)
            if len(x) >= COMPARE_ROWS:  # binary works: is JSON faster on this server?
                start = time.perf_counter()
                try:
                    self._infer_json(x)
                    self._binary = time.perf_counter() - start >= binary_s
                except LimnerError:
                    self._binary = True
            return out
        if resp is not None and resp.status_code not in _REFUSED_BINARY:
            raise ModelError(f"{self.url}: scoring {self._answer(resp)}")
        self._binary = False
        try:
            return self._infer(x)
        except ModelUnavailableError as exc:
            if _timed_out(exc):
                raise
            return self._infer(x)  # the refusal may have closed a kept-alive connection

    def _post_binary(self, x: np.ndarray) -> Answer:
        dtype = DATATYPE_OF[x.dtype]
        message: dict[str, Any] = {
            "inputs": [{"name": self._input_name, "shape": list(x.shape), "datatype": dtype}],
            "parameters": {"log": False, "binary_data_output": True},
        }
        if self._output_name:
            message["outputs"] = [{"name": self._output_name, "parameters": {"binary_data": True}}]
        body, length = pack_binary(message, "inputs", {self._input_name: to_raw(dtype, x)})
        return self._send(
            "POST",
            f"{self.url}/infer",
            max_bytes=self._answer_cap(len(x)),
            content=body,
            headers={"Content-Type": "application/octet-stream", HEADER_LENGTH: str(length)},
        )

    def _post_json(self, x: np.ndarray) -> Answer:
        tensor = {
            "name": self._input_name,
            "shape": list(x.shape),
            "datatype": DATATYPE_OF[x.dtype],
        }
        body: dict[str, Any] = {"inputs": [tensor], "parameters": {"log": False}}
        if self._output_name:
            body["outputs"] = [{"name": self._output_name}]
        return self._send(
            "POST",
            f"{self.url}/infer",
            max_bytes=self._answer_cap(len(x)),
            content=_json_body(body, x.reshape(-1)),
            headers={"Content-Type": "application/json"},
        )

    def _read_output(self, resp: Answer) -> np.ndarray:
        """The chosen output of an inference answer. The errors say what is wrong, never what
        the server sent, unless its errors are quoted (``quote_errors``)."""
        bad = f"{self.url}: not an Open Inference response"
        try:
            length = resp.headers.get(HEADER_LENGTH)
            message, raws = unpack_binary(
                resp.content, int(length) if length is not None else None, "outputs"
            )
            outputs = [ResponseOutput.model_validate(o) for o in message["outputs"]]
            chosen = outputs[self._pick([o.name for o in outputs])]
            array = decode_value(chosen, raws.get(chosen.name))
        except ValidationError as exc:  # its text quotes the values it refused
            raise ModelError(f"{bad} (an output is not a tensor: name, shape, datatype)") from exc
        except (LimnerError, ValueError, KeyError, TypeError, IndexError) as exc:
            detail = f"{exc}" if self._quote else "its outputs do not decode as tensors"
            raise ModelError(f"{bad} ({detail})") from exc
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise ModelError(f"{bad} (the output read is not numeric)")
        return np.asarray(array, dtype=np.float32)

    def _answer(self, resp: Answer) -> str:
        """``answered 401: <the server's message>`` (the message only when errors are quoted),
        whatever error shape the server uses."""
        hint = (
            " (give the model's headers, e.g. an Authorization key)"
            if resp.status_code in (401, 403)
            else ""
        )
        if not self._quote:
            return f"answered {resp.status_code}{hint}"
        message = resp.text[:200]
        try:
            body = resp.json()
            error = body.get("error", body.get("detail"))
            message = str(error.get("message", error) if isinstance(error, dict) else error)
        except (ValueError, AttributeError):
            pass
        return f"answered {resp.status_code}: {message[:200]}{hint}"

    def close(self) -> None:
        """Close the request threads and the HTTP client."""
        super().close()
        self._client.close()


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is a request abandoned at its deadline (not worth trying again)."""
    return isinstance(exc.__cause__, DeadlineExceededError)


def _json_body(body: dict[str, Any], data: np.ndarray) -> bytes:
    """``body`` as JSON with ``data`` as the first input's ``data`` (orjson when installed:
    it writes numpy arrays itself, several times faster than ``json`` on a list)."""
    try:
        import orjson
    except ImportError:
        body["inputs"][0]["data"] = data.tolist()
        return json.dumps(body, separators=(",", ":")).encode()
    body["inputs"][0]["data"] = np.ascontiguousarray(data)
    try:
        return bytes(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
    except orjson.JSONEncodeError:  # a dtype orjson does not write
        body["inputs"][0]["data"] = data.tolist()
        return bytes(orjson.dumps(body))
