"""A KServe ``ModelServer`` serving an ONNX classifier and publishing no metadata.

Run as its own process (kserve's protobuf types must not meet another copy in one process):
``python kserve_server.py --port N [--grpc-port M] --onnx model.onnx --name NAME [--mean 127
--std 128 --scale 1] [--require-header 'X-Key: secret']``. UINT8 ``[N,H,W,3]`` pixels are
preprocessed here (``(pixel * scale - mean) / std``, NCHW); FP32 tensors go to the model as they
are. The model runs in chunks of 4 images, ONNX Runtime's fastest batch on a small CPU.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import onnxruntime as ort
from kserve import InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput


class OnnxClassifier(Model):
    """An ONNX image classifier; answers ``logits`` FP32 ``[N, C]``."""

    def __init__(self, name: str, path: str, args: argparse.Namespace) -> None:
        super().__init__(name)
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.args = args
        self.ready = True

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        if self.args.require_header:
            name, _, value = self.args.require_header.partition(":")
            got = {k.lower(): v for k, v in (headers or {}).items()}.get(name.strip().lower())
            if got != value.strip():
                raise InvalidInput(f"header {name.strip()} missing or wrong")
        x = payload.inputs[0].as_numpy()
        if x.dtype == np.uint8:
            a = self.args
            x = ((x.astype(np.float32) * a.scale - a.mean) / a.std).transpose(0, 3, 1, 2)
            x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.concatenate(
            [self.session.run(None, {self.input: x[s : s + 4]})[0] for s in range(0, len(x), 4)]
        )
        output = InferOutput(name="logits", shape=list(out.shape), datatype="FP32")
        output.set_data_from_numpy(out.astype(np.float32), binary_data=False)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=bool(payload.use_binary_outputs),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=0, help="also serve gRPC on this port")
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--name", default="classifier")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--mean", type=float, default=127.0)
    parser.add_argument("--std", type=float, default=128.0)
    parser.add_argument("--require-header", default="")
    args, _ = parser.parse_known_args()
    logging.getLogger().setLevel(logging.WARNING)
    ModelServer(
        http_port=args.port,
        grpc_port=args.grpc_port or 8081,
        enable_grpc=bool(args.grpc_port),
        workers=1,
    ).start([OnnxClassifier(args.name, args.onnx, args)])


if __name__ == "__main__":
    main()
