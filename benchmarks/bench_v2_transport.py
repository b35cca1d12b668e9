"""What a batch costs through limner's Open Inference transports against the model itself.

Serves efficientnet-lite0 on loopback (HTTP and gRPC, in this process), then scores the same
batch of uint8 224×224 images locally, through ``/v2`` as JSON, through ``/v2`` with the binary
tensor extension, and through gRPC with raw and with typed contents (``log: false``, as limner's
remote adapter sends). Prints a markdown table of median seconds per batch.

    .venv/bin/python benchmarks/bench_v2_transport.py [--batch 64] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import numpy as np

import limner
from limner.client import APIClient
from limner.protocol import HEADER_LENGTH, from_raw, pack_binary, to_raw, unpack_binary
from limner.protocol import grpc_predict_v2_pb2 as pb
from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc
from limner.service import EmbeddedServer, create_app
from limner.settings import Settings
from limner.store import Database, create_key


def median_seconds(call: Callable[[], np.ndarray], repeats: int, expected: np.ndarray) -> float:
    np.testing.assert_allclose(call(), expected, atol=1e-4)  # warm up, and check the answer
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x = np.random.default_rng(0).integers(0, 256, (args.batch, 224, 224, 3), dtype=np.uint8)
    model = limner.load_model("efficientnet-lite0", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), database_url="", grpc_port=0, max_body_bytes=512 * 1024**2
        )
        db = Database(settings.resolved_database_url())
        db.migrate()
        key = create_key(db, "bench")
        db.close()
        with EmbeddedServer(create_app(settings)) as server:
            with APIClient(server.url, api_key=key) as client:
                client.deployments.create(name="lite0", model="efficientnet-lite0")
            http = httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300
            )
            channel = grpc.insecure_channel(
                f"127.0.0.1:{server.app.state.grpc_port}",
                options=[("grpc.max_receive_message_length", -1)],
            )
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            md = [("authorization", f"Bearer {key}")]
            url = "/v2/models/lite0/infer"
            tensor = {"name": "image", "shape": list(x.shape), "datatype": "UINT8"}
            wanted = [{"name": "probability"}]

            def json_infer() -> np.ndarray:
                body = {
                    "inputs": [tensor | {"data": x.reshape(-1).tolist()}],
                    "outputs": wanted,
                    "parameters": {"log": False},
                }
                out = http.post(url, json=body).json()["outputs"][0]
                return np.asarray(out["data"], np.float32).reshape(out["shape"])

            def binary_infer() -> np.ndarray:
                message = {
                    "inputs": [tensor],
                    "outputs": wanted,
                    "parameters": {"log": False, "binary_data_output": True},
                }
                body, n = pack_binary(message, "inputs", {"image": to_raw("UINT8", x)})
                resp = http.post(url, content=body, headers={HEADER_LENGTH: str(n)})
                out, raws = unpack_binary(resp.content, int(resp.headers[HEADER_LENGTH]), "outputs")
                return from_raw("FP32", out["outputs"][0]["shape"], raws["probability"])

            def grpc_infer(raw: bool) -> np.ndarray:
                req = pb.ModelInferRequest(model_name="lite0")
                t = req.inputs.add(name="image", datatype="UINT8", shape=list(x.shape))
                if raw:
                    req.raw_input_contents.append(to_raw("UINT8", x))
                else:
                    t.contents.uint_contents.extend(x.reshape(-1).tolist())
                req.outputs.add(name="probability")
                req.parameters["log"].bool_param = False
                resp = stub.ModelInfer(req, metadata=md)
                shape = list(resp.outputs[0].shape)
                if raw:
                    return from_raw("FP32", shape, resp.raw_output_contents[0])
                return np.asarray(resp.outputs[0].contents.fp32_contents, np.float32).reshape(shape)

            expected = model.predict(x)
            rows = [
                ("local model (ONNX Runtime)", lambda: model.predict(x)),
                ("/v2 JSON", json_infer),
                ("/v2 binary tensors", binary_infer),
                ("gRPC raw contents", lambda: grpc_infer(True)),
                ("gRPC typed contents", lambda: grpc_infer(False)),
            ]
            results = [(name, median_seconds(f, args.repeats, expected)) for name, f in rows]
            channel.close()
            http.close()
    base = results[0][1]
    print(f"| {args.batch} × uint8 224×224 | s per batch (median of {args.repeats}) | × local |")
    print("|---|---|---|")
    for name, seconds in results:
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
