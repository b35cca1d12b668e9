"""ONNX Runtime adapter: the CPU path for every ONNX classifier (CUDA provider when present).

An ONNX graph declares its input tensor (fixed dimensions, element type) and its outputs: the
input size, layout, channels and element type it fixes fill the gaps of the metadata
(:func:`onnx_signature`), and are checked against what the user gave when it is deployed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from limner.errors import ModelError
from limner.models.base import Model
from limner.models.metadata import (
    Layout,
    ModelMetadata,
    Signature,
    complete,
    merge_hints,
    plain_text,
    without_folder,
)

#: ONNX Runtime's element type names → limner's input ``dtype``.
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(uint16)": "uint16",
    "tensor(int16)": "int16",
    "tensor(uint32)": "uint32",
    "tensor(int32)": "int32",
    "tensor(uint64)": "uint64",
    "tensor(int64)": "int64",
}

#: Operators a classifier's output passes through unchanged in meaning (shape and type only).
_PASS_THROUGH = frozenset(
    {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Transpose"}
)
#: Last operators of a model that outputs probabilities, and of one that outputs logits.
_PROBABILITY_OPS = frozenset({"Softmax", "Sigmoid"})
_LINEAR_OPS = frozenset({"Gemm", "MatMul", "Add", "Conv", "LogSoftmax"})


def session_threads() -> int:
    """The threads an ONNX Runtime session runs on: ``LIMNER_THREADS``, else every core."""
    return int(os.environ.get("LIMNER_THREADS", 0)) or (os.cpu_count() or 1)


def open_session(path: str | Path, device: str = "cpu") -> tuple[Any, int]:
    """An ONNX Runtime session of the model at ``path`` and its preferred batch size (errors
    name the file, not the folder it lies in)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = session_threads()
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    batch = OnnxModel.preferred_batch_size
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
        batch = 256
    shown = Path(path)
    try:
        session = ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # ONNX Runtime's messages name the file by its full path
        problem = plain_text(without_folder(str(exc), shown.parent))
        raise ModelError(f"{shown.name}: not a loadable ONNX model ({problem})") from exc
    return session, batch


class OnnxModel(Model):
    """A classifier run by ONNX Runtime."""

    #: Measured on 2 CPU cores with efficientnet-lite0: batches of 4 run fastest (≈330 img/s).
    preferred_batch_size = 4

    def __init__(
        self,
        path: str | Path,
        metadata: ModelMetadata,
        *,
        device: str = "cpu",
        name: str | None = None,
        session: tuple[Any, int] | None = None,
    ) -> None:
        """``session``: an :func:`open_session` answer for ``path`` (opened here if not given)."""
        super().__init__(metadata, name=name)
        self._session, self.preferred_batch_size = session or open_session(path, device)
        self._input = self._session.get_inputs()[0].name
        self.path = Path(path)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._session.run(None, {self._input: x})[0]
        except Exception as exc:
            problem = plain_text(without_folder(str(exc), self.path.parent))
            raise ModelError(f"{self.name}: ONNX Runtime failed ({problem})") from exc

    def signature(self) -> Signature:
        """The fixed dimensions and element type of the graph's input, and its output count."""
        return onnx_signature(self._session)


def onnx_signature(session: Any) -> Signature:
    """What an ONNX Runtime session's first input and first output declare."""
    first = session.get_inputs()[0]
    dims = [_fixed(d) for d in first.shape]
    width = height = channels = None
    layout: Layout | None = None
    if len(dims) == 4:
        c_first, c_last = dims[1], dims[3]
        if c_first in (1, 3) and c_last not in (1, 3):
            layout, channels, height, width = "NCHW", c_first, dims[2], dims[3]
        elif c_last in (1, 3) and c_first not in (1, 3):
            layout, channels, height, width = "NHWC", c_last, dims[1], dims[2]
    out_dims = [_fixed(d) for d in session.get_outputs()[0].shape]
    outputs = None
    sizes = [d for d in out_dims[1:] if d is not None]
    if len(out_dims) >= 2 and len(sizes) == len(out_dims) - 1:
        outputs = int(np.prod(sizes))
    shape = "(" + ", ".join(str(d) if d is not None else "N" for d in dims) + ")"
    return Signature(
        width=width,
        height=height,
        channels=channels,
        layout=layout,
        dtype=ORT_DTYPES.get(str(first.type)),
        outputs=outputs,
        shape=shape if dims else None,
    )


def _fixed(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, int) and dim > 0 else None


def output_kind(path: Path) -> str | None:
    """``probabilities`` when the graph's first output comes out of a softmax or sigmoid,
    ``logits`` when it comes out of a linear operator, else None (it does not tell)."""
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # ONNX Runtime loaded it: whatever onnx cannot read tells nothing
        return None
    if not graph.output:
        return None
    producers = {out: node for node in graph.node for out in node.output}
    name = graph.output[0].name
    for _ in range(32):
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type in _PASS_THROUGH and node.input:
            name = node.input[0]
            continue
        if node.op_type in _PROBABILITY_OPS:
            return "probabilities"
        return "logits" if node.op_type in _LINEAR_OPS else None
    return None


def load_onnx(
    path: Path, metadata: ModelMetadata | None, given: dict[str, Any], *, device: str, name: str
) -> OnnxModel:
    """Load an ONNX classifier: ``metadata`` as it is, or ``given`` (the user's fields, any
    subset) over what the graph tells (input size, layout, channels, element type, output
    kind); what is still missing is named in one message."""
    session = open_session(path, device)
    if metadata is None:
        sig = onnx_signature(session[0])
        told: dict[str, Any] = {"name": name, **sig.hints()}
        if "output" not in given:
            kind = output_kind(path)
            if kind is not None:
                told["output"] = kind
        metadata = complete(merge_hints(told, given), what=path.name, signature=sig)
    return OnnxModel(path, metadata, device=device, session=session)
