"""Remote models over the Open Inference gRPC protocol: ``grpc://host:port/NAME``.

The same protocol as :mod:`limner.models.remote` over gRPC instead of HTTP: tensors always
travel as ``raw_input_contents`` (bytes, never numbers one by one), answers are read from
``raw_output_contents`` or the typed contents. Servers whose HTTP decoder is slow take gRPC's
raw bytes as they are (a KServe ``ModelServer``'s REST side turns a binary tensor into a
Python list element by element; its gRPC side wraps the bytes in an array). ``grpcs://``
uses TLS. Metadata and hints are resolved exactly as for HTTP URLs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import numpy as np

from limner.errors import InvalidInputError, ModelError, ModelUnavailableError
from limner.models.metadata import ModelMetadata
from limner.models.remote import OpenInferenceModel
from limner.models.remote_metadata import ServerDescription, describe
from limner.protocol import CONTENTS_FIELDS, DATATYPE_OF, from_contents, from_raw, to_raw

#: URL schemes of gRPC models: plain and TLS.
GRPC_SCHEMES = ("grpc://", "grpcs://")
#: Largest message either way (a request of 64 images of 448×448 float32 is 154 MB).
MAX_MESSAGE = 256 * 1024 * 1024
#: Tensor bytes per request: under the 4 MiB that gRPC servers take by default (KServe's take
#: 8 MiB, Triton's 2 GiB), and small enough that two in flight keep the server busy.
REQUEST_BYTES = 2 * 1024 * 1024 + 512 * 1024
_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def is_grpc_url(spec: str) -> bool:
    """Whether a model spec is a ``grpc://`` or ``grpcs://`` URL."""
    return spec.lower().startswith(GRPC_SCHEMES)


def parse_grpc_url(url: str) -> tuple[str, str, bool]:
    """``(host:port, model name, tls)`` of ``grpc[s]://host:port/NAME`` (or
    ``.../v2/models/NAME``, the HTTP route's shape)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError(f"{url}: not a valid port") from exc
    if not parts.hostname or port is None:
        raise InvalidInputError(f"{url}: give the host and the port, grpc://HOST:PORT/MODEL")
    path = parts.path.strip("/")
    if path.startswith("v2/models/"):
        path = path[len("v2/models/") :]
    name = path.split("/", 1)[0]
    if not name:
        raise InvalidInputError(f"{url}: give the model's name, grpc://HOST:PORT/MODEL")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", name, parts.scheme.lower() == "grpcs"


class GrpcRemoteModel(OpenInferenceModel):
    """A classifier behind ``grpc://host:port/NAME`` (Triton, KServe, limner ``--grpc-port``).

    Args:
        url: ``grpc://host:port/NAME`` or ``grpcs://`` for TLS.
        metadata: complete metadata (nothing is asked of the server but the tensor names).
        hints: the fields the server does not publish (labels, input size and settings, output
            kind), any subset of a ``limner-model.json``.
        headers: sent as gRPC metadata with every call (``Authorization: Bearer …`` becomes
            ``authorization``).
        request_batch: images per request at most; requests go ``concurrency`` at a time.
    """

    preferred_batch_size = 128

    def __init__(
        self,
        url: str,
        metadata: ModelMetadata | None = None,
        *,
        hints: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
        input_name: str | None = None,
        request_batch: int = 64,
        concurrency: int = 2,
    ) -> None:
        import grpc

        from limner.protocol import grpc_predict_v2_pb2 as pb
        from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc

        self.url = url.rstrip("/")
        target, self._model, tls = parse_grpc_url(self.url)
        self._grpc, self._pb = grpc, pb
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.enable_http_proxy", 0),
        ]
        self._channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials(), options)
            if tls
            else grpc.insecure_channel(target, options)
        )
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self._call_metadata = [(k.strip().lower(), v.strip()) for k, v in (headers or {}).items()]
        self._timeout = timeout
        self._start_pool(request_batch, concurrency, "limner-grpc")
        try:
            metadata = self._resolve(metadata, hints, input_name)
        except BaseException:
            self.close()
            raise
        super().__init__(metadata, name=metadata.name)

    # --- talking to the server ----------------------------------------------------------------

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(
                request, metadata=self._call_metadata, timeout=self._timeout
            )
        except self._grpc.RpcError as exc:
            what = "scoring" if method == "ModelInfer" else "metadata request"
            raise self._error(exc, what) from exc

    def _error(self, exc: Any, what: str) -> ModelError:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        name = code.name if code is not None else "UNKNOWN"
        details = exc.details() if callable(getattr(exc, "details", None)) else ""
        if name in _UNAVAILABLE:
            return ModelUnavailableError(f"{self.url}: cannot be reached ({name})")
        hint = (
            " (give the model's headers, e.g. an Authorization key)"
            if name in ("UNAUTHENTICATED", "PERMISSION_DENIED")
            else ""
        )
        return ModelError(f"{self.url}: {what} answered {name}: {str(details)[:200]}{hint}")

    def _describe(self) -> ServerDescription:
        answer = self._call("ModelMetadata", self._pb.ModelMetadataRequest(name=self._model))
        tensors = [
            [
                {"name": t.name, "datatype": t.datatype, "shape": [int(d) for d in t.shape]}
                for t in group
            ]
            for group in (answer.inputs, answer.outputs)
        ]
        body = {"name": answer.name, "inputs": tensors[0], "outputs": tensors[1]}
        return describe(body, self.url)

    def _request_bytes(self) -> int:
        return REQUEST_BYTES

    def _infer(self, x: np.ndarray) -> np.ndarray:
        pb = self._pb
        datatype = DATATYPE_OF[x.dtype]
        request = pb.ModelInferRequest(
            model_name=self._model,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name=self._input_name, datatype=datatype, shape=list(x.shape)
                )
            ],
            raw_input_contents=[to_raw(datatype, x)],
        )
        request.parameters["log"].bool_param = False  # limner's own server: no transactions
        if self._output_name:
            request.outputs.add(name=self._output_name)
        return self._read(self._call("ModelInfer", request))

    def _read(self, answer: Any) -> np.ndarray:
        outputs = list(answer.outputs)
        if not outputs:
            raise ModelError(f"{self.url}: not an Open Inference response (no outputs)")
        index = self._pick([o.name for o in outputs])
        out = outputs[index]
        shape = [int(d) for d in out.shape]
        try:
            if len(answer.raw_output_contents) > index:
                value = from_raw(out.datatype, shape, answer.raw_output_contents[index], out.name)
            else:
                value = from_contents(out.datatype, shape, _typed_values(out), out.name)
        except (InvalidInputError, ValueError, KeyError) as exc:
            raise ModelError(f"{self.url}: not an Open Inference response ({exc})") from exc
        return np.asarray(value, dtype=np.float32)

    def close(self) -> None:
        """Close the request threads and the channel."""
        super().close()
        self._channel.close()


def _typed_values(tensor: Any) -> list[Any]:
    """The values of the typed-contents field of a tensor's datatype."""
    field = CONTENTS_FIELDS.get(tensor.datatype)
    return list(getattr(tensor.contents, field)) if field else []
