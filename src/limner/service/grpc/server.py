"""``GRPCInferenceService`` on grpcio, sharing the service's state and scoring with HTTP ``/v2``.

Every call needs ``authorization: Bearer KEY`` metadata, checked like the HTTP header. limner's
errors map to the protocol's status codes (:data:`STATUS_CODES`); anything unexpected is logged
and answered ``INTERNAL`` without details.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from functools import wraps
from typing import Any, TypeVar

import grpc

from limner import __version__
from limner.errors import ForbiddenError, InvalidInputError, LimnerError
from limner.protocol import (
    CONTENTS_FIELDS,
    TensorValue,
    from_contents,
    from_raw,
    to_contents,
    to_raw,
)
from limner.protocol import grpc_predict_v2_pb2 as pb
from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc
from limner.service.core import inference as core
from limner.service.core.deployments import find_deployment
from limner.service.guard import space_of_authorization
from limner.service.metrics import NO_SPACE
from limner.service.state import ServiceState
from limner.store import SpaceRef

log = logging.getLogger("limner.service.grpc")

#: HTTP status of a limner error → gRPC status code.
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

_R = TypeVar("_R")

#: The space of the call this thread serves (for the metrics' ``space`` label).
_call = threading.local()


def _peer_address(peer: str) -> str:
    """The address of a gRPC peer such as ``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000``."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")]
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


_Method = Callable[["InferenceServicer", Any, grpc.ServicerContext], _R]


def _handled(method: _Method[_R]) -> _Method[_R]:
    """Map limner errors to the protocol's status codes and count the call."""

    @wraps(method)
    def call(self: InferenceServicer, request: Any, context: grpc.ServicerContext) -> _R:
        code = grpc.StatusCode.OK
        _call.space_id = NO_SPACE
        try:
            return method(self, request, context)
        except LimnerError as exc:
            code = STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL)
            context.abort(code, exc.message)
        except Exception:
            log.exception("unexpected error in gRPC %s", method.__name__)
            code = grpc.StatusCode.INTERNAL
            context.abort(code, "internal error; the server log has details")
        finally:
            labels = (_call.space_id, "GRPC", method.__name__, code.name)
            self.state.metrics.requests.labels(*labels).inc()
        raise AssertionError("context.abort returned")  # pragma: no cover

    return call


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's methods over the service's deployments, scoped to the caller's space."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def _space(self, context: grpc.ServicerContext) -> SpaceRef:
        """The caller's space; failed keys count against the peer's address, as over HTTP."""
        header = next(
            (str(v) for k, v in context.invocation_metadata() if k.lower() == "authorization"),
            "",
        )
        client = _peer_address(context.peer())
        space = space_of_authorization(self.state.db, header, self.state.key_limiter, client)
        _call.space_id = space.id
        return space

    @_handled
    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The server is alive."""
        self._space(context)
        return pb.ServerLiveResponse(live=True)

    @_handled
    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The server is ready to score."""
        self._space(context)
        return pb.ServerReadyResponse(ready=True)

    @_handled
    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Name, version and the protocol extensions limner has."""
        self._space(context)
        return pb.ServerMetadataResponse(
            name="limner", version=__version__, extensions=core.EXTENSIONS
        )

    @_handled
    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Whether the space's deployment ``request.name`` can score."""
        find_deployment(self.state, self._space(context), request.name)
        return pb.ModelReadyResponse(ready=True)

    @_handled
    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The deployment's tensors (and, in ``properties``, its id)."""
        dep = find_deployment(self.state, self._space(context), request.name)
        inputs, outputs = core.tensor_specs(dep)
        meta = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=dep.name,
            versions=[core.MODEL_VERSION],
            platform="limner",
            inputs=[meta(name=t.name, datatype=t.datatype, shape=t.shape) for t in inputs],
            outputs=[meta(name=t.name, datatype=t.datatype, shape=t.shape) for t in outputs],
            properties={"deployment_id": dep.id},
        )

    @_handled
    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Score an image tensor; answer raw contents when the request came raw."""
        space = self._space(context)
        if not space.can_write:
            raise ForbiddenError("a viewer's key reads and explains; it does not score")
        raw = len(request.raw_input_contents) > 0
        if raw and len(request.raw_input_contents) != len(request.inputs):
            raise InvalidInputError(
                f"{len(request.inputs)} inputs but {len(request.raw_input_contents)} "
                "raw_input_contents"
            )
        inputs = [
            _input(t, request.raw_input_contents[i] if raw else None)
            for i, t in enumerate(request.inputs)
        ]
        log_param = request.parameters.get("log")
        logged = not (
            log_param is not None
            and log_param.WhichOneof("parameter_choice") == "bool_param"
            and not log_param.bool_param
        )
        wanted = [o.name for o in request.outputs] or None
        result = core.infer(
            self.state, space, request.model_name, inputs, wanted=wanted, log=logged
        )
        response = pb.ModelInferResponse(
            model_name=result.model_name, model_version=core.MODEL_VERSION, id=request.id
        )
        response.parameters["scoring_ids"].string_param = json.dumps(result.scoring_ids)
        for out in result.outputs:
            tensor = response.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
            if raw:
                response.raw_output_contents.append(to_raw(out.datatype, out.value))
            else:
                field, values = to_contents(out.datatype, out.value)
                getattr(tensor.contents, field).extend(values)
        return response


def _input(tensor: Any, raw: bytes | None) -> core.InputTensor:
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)

    def decode() -> TensorValue:
        if raw is not None:
            return from_raw(datatype, shape, raw, name)
        field = CONTENTS_FIELDS.get(datatype)
        values = list(getattr(tensor.contents, field)) if field else []
        return from_contents(datatype, shape, values, name)

    return core.InputTensor(name, datatype, shape, decode)


class GrpcServer:
    """The gRPC service on ``host:port`` (port 0: a free one), in grpcio's own threads."""

    def __init__(self, state: ServiceState, host: str, port: int, *, workers: int = 8) -> None:
        limit = state.settings.max_body_bytes
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="limner-grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(state), self._server)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self._server.add_insecure_port(target)
        except RuntimeError as exc:
            raise LimnerError(f"gRPC cannot listen on {target} ({exc})") from exc
        if self.port == 0:
            raise LimnerError(f"gRPC cannot listen on {target}")

    def start(self) -> GrpcServer:
        """Start serving."""
        self._server.start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop serving, letting calls in flight finish for ``grace`` seconds."""
        self._server.stop(grace).wait()
