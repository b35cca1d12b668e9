"""Key guessing over gRPC is slowed like over HTTP: the failures count against the peer's
address, in the same window, so switching protocols buys no extra tries. Through a real
``limner serve --grpc-port``."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from limits_helpers import Server, free_port, limner_serve

from limner.protocol import grpc_predict_v2_pb2 as pb
from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

GRPC_PORT = free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("grpc-keys")
    with limner_serve(tmp, LIMNER_GRPC_PORT=str(GRPC_PORT)) as srv:
        yield srv


def _live(stub: pb_grpc.GRPCInferenceServiceStub, key: str) -> grpc.StatusCode:
    try:
        stub.ServerLive(pb.ServerLiveRequest(), metadata=[("authorization", f"Bearer {key}")])
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_grpc_key_guessing_is_slowed_and_shares_the_window_with_http(server: Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{GRPC_PORT}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert _live(stub, server.key) == grpc.StatusCode.OK
        for i in range(10):
            assert _live(stub, f"lmn_guess{i}") == grpc.StatusCode.UNAUTHENTICATED
        assert _live(stub, "lmn_guess") == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _live(stub, server.key) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The same address over HTTP is blocked too; another address is not.
    blocked = httpx.get(f"{server.url}/v1/deployments", headers=server.auth())
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with other:
        assert other.get(f"{server.url}/v1/deployments", headers=server.auth()).status_code == 200
