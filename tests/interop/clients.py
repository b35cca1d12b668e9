"""Score through limner with a third-party Open Inference client; print a JSON report.

Run as ``python clients.py '{"client": ..., "http": URL, "grpc": HOST:PORT, "key": KEY,
"model": NAME, "photo": PATH, "binary": true}'``, one client per process: tritonclient.grpc
and kserve each register the protocol's ``inference.*`` messages in protobuf's default pool,
so they cannot share one.

The report: ``results`` (one per scoring: the input kind, the top label, the number of classes,
the scoring ids) and ``errors`` (per mistake: the exception's class and message, and its
status where the client gives one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _pixels(photo: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))[None]


def _error(exc: BaseException) -> dict[str, Any]:
    status = None
    if hasattr(exc, "status") and callable(exc.status):
        status = exc.status()
    elif hasattr(exc, "code") and callable(exc.code):
        status = exc.code().name
    elif getattr(exc, "response", None) is not None:
        status = exc.response.status_code  # type: ignore[attr-defined]
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else None
    if message is None and hasattr(exc, "details") and callable(exc.details):
        message = exc.details()
    return {"type": type(exc).__name__, "message": message or str(exc), "status": status}


def triton(args: dict[str, Any], grpc: bool) -> dict[str, Any]:
    if grpc:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(url=args["grpc"])
        headers = {"authorization": f"Bearer {args['key']}"}  # gRPC metadata: lowercase keys
    else:
        import tritonclient.http as tc  # type: ignore[no-redef]

        client = tc.InferenceServerClient(url=args["http"].split("://", 1)[1])
        headers = {"Authorization": f"Bearer {args['key']}"}
    from tritonclient.utils import InferenceServerException

    binary = bool(args.get("binary", True))
    photo = Path(args["photo"]).read_bytes()
    pixels = _pixels(photo)
    files = np.array([photo if binary else base64.b64encode(photo)], dtype=np.object_)

    def infer(model: str, array: np.ndarray, datatype: str, hdrs: dict[str, str]) -> Any:
        inp = tc.InferInput("image", list(array.shape), datatype)
        if grpc:
            inp.set_data_from_numpy(array)
            outputs = None
        else:
            inp.set_data_from_numpy(array, binary_data=binary)
            outputs = [
                tc.InferRequestedOutput(n, binary_data=binary)
                for n in ("probability", "prediction")
            ]
        return client.infer(model, [inp], outputs=outputs, headers=hdrs)

    assert client.is_server_live(headers=headers)
    assert client.is_model_ready(args["model"], headers=headers)
    results = []
    for kind, array, datatype in (("uint8", pixels, "UINT8"), ("bytes", files, "BYTES")):
        res = infer(args["model"], array, datatype, headers)
        prob = res.as_numpy("probability")
        label = res.as_numpy("prediction")[0]
        if grpc:
            ids = json.loads(res.get_response().parameters["scoring_ids"].string_param)
        else:
            ids = res.get_response()["parameters"]["scoring_ids"]
        results.append(
            {
                "input": kind,
                "top": label.decode() if isinstance(label, bytes) else str(label),
                "argmax": int(prob.argmax()),
                "classes": int(prob.shape[1]),
                "scoring_ids": ids,
            }
        )
    errors = {}
    gray = np.zeros((1, 8, 8), np.uint8)
    for name, call in (
        ("wrong_shape", lambda: infer(args["model"], gray, "UINT8", headers)),
        ("unknown_model", lambda: infer("nope", pixels, "UINT8", headers)),
        ("no_key", lambda: infer(args["model"], pixels, "UINT8", {})),
    ):
        try:
            call()
            errors[name] = {"type": None}
        except InferenceServerException as exc:
            errors[name] = _error(exc)
    return {"results": results, "errors": errors}


async def kserve(args: dict[str, Any], grpc: bool) -> dict[str, Any]:
    from kserve import (
        InferenceGRPCClient,
        InferenceRESTClient,
        InferInput,
        InferRequest,
        RESTConfig,
    )

    photo = Path(args["photo"]).read_bytes()
    pixels = _pixels(photo)
    if grpc:
        client: Any = InferenceGRPCClient(url=args["grpc"], retries=2)
        headers: Any = [("authorization", f"Bearer {args['key']}")]
    else:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        headers = {"Authorization": f"Bearer {args['key']}"}

    async def infer(model: str, inp: InferInput, hdrs: Any) -> Any:
        req = InferRequest(model_name=model, infer_inputs=[inp], request_id="interop")
        if grpc:
            return await client.infer(req, headers=hdrs)
        # a copy: kserve's REST client writes the binary header into the dict it is given
        return await client.infer(args["http"], req, model_name=model, headers=dict(hdrs))

    def typed_pixels(array: np.ndarray) -> InferInput:  # JSON data / gRPC typed contents
        return InferInput("image", list(array.shape), "UINT8", data=array.reshape(-1).tolist())

    def binary_files() -> InferInput:  # the binary extension / gRPC raw contents
        inp = InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([photo], dtype=np.object_), binary_data=True)
        return inp

    def binary_pixels(array: np.ndarray) -> InferInput:
        inp = InferInput("image", list(array.shape), "UINT8")
        inp.set_data_from_numpy(array, binary_data=True)
        return inp

    results = []
    for kind, make in (
        ("uint8", lambda: typed_pixels(pixels)),
        ("uint8-binary", lambda: binary_pixels(pixels)),
        ("bytes", binary_files),
    ):
        res = await infer(args["model"], make(), headers)
        out = {o.name: o for o in res.outputs}
        prob = out["probability"].as_numpy()
        label = out["prediction"].as_numpy().reshape(-1)[0]
        params = res.parameters
        ids = json.loads(params["scoring_ids"].string_param) if grpc else params["scoring_ids"]
        results.append(
            {
                "input": kind,
                "top": label.decode() if isinstance(label, bytes) else str(label),
                "argmax": int(prob.reshape(prob.shape[0], -1).argmax()),
                "classes": int(prob.reshape(prob.shape[0], -1).shape[1]),
                "scoring_ids": ids,
            }
        )
    errors = {}
    gray = np.zeros((1, 8, 8), np.uint8)
    for name, coro in (
        ("wrong_shape", lambda: infer(args["model"], typed_pixels(gray), headers)),
        ("unknown_model", lambda: infer("nope", binary_pixels(pixels), headers)),
        ("no_key", lambda: infer(args["model"], binary_pixels(pixels), [] if grpc else {})),
    ):
        try:
            await coro()
            errors[name] = {"type": None}
        except Exception as exc:
            errors[name] = _error(exc)
    if grpc:
        await client.close()
    return {"results": results, "errors": errors}


def main() -> None:
    args = json.loads(sys.argv[1])
    which = args["client"]
    if which.startswith("triton"):
        report = triton(args, grpc=which == "triton_grpc")
    else:
        report = asyncio.run(kserve(args, grpc=which == "kserve_grpc"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
