"""The Open Inference model behind ``/v2`` and gRPC: one image input, three outputs.

Both transports decode their tensors with :mod:`limner.protocol` and call :func:`infer`; the
scoring itself (and the logging of transactions) is :func:`limner.service.core.scoring.score`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from limner.errors import InvalidInputError
from limner.protocol import TensorSpec, TensorValue
from limner.service.core.deployments import find_deployment
from limner.service.core.scoring import (
    check_count,
    check_request_pixels,
    decode_files,
    from_pixels,
    score,
)
from limner.service.state import ServiceState
from limner.store import SpaceRef
from limner.store.tables import Deployment

#: The extensions of the protocol limner serves (``GET /v2``, gRPC ``ServerMetadata``).
EXTENSIONS = ["binary_tensor_data", "parameters"]

#: Outputs of every deployment, in the order they are answered.
OUTPUT_NAMES = ("probability", "prediction", "prediction_classes")
#: An object detector's outputs besides ``probability`` (each class's best box score), padded
#: to the most boxes of any image of the batch (scores 0, classes -1 in the padding); boxes are
#: ``[x0, y0, x1, y1]`` in each photo's pixels.
DETECTION_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")

#: The version every deployment answers with (a deployment has one model).
MODEL_VERSION = "1"


@dataclass
class InputTensor:
    """An input tensor as it arrived: its header, and how to decode its data (done only once
    the header is accepted)."""

    name: str
    datatype: str
    shape: list[int]
    decode: Callable[[], TensorValue]


@dataclass
class OutputTensor:
    """An output: numeric arrays, or ``list[bytes]`` for BYTES."""

    name: str
    datatype: str
    shape: list[int]
    value: TensorValue


@dataclass
class InferResult:
    """What a deployment answers: its name, the outputs asked for, the transaction ids."""

    model_name: str
    outputs: list[OutputTensor]
    scoring_ids: list[str | None]


def tensor_specs(dep: Deployment) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs every deployment publishes."""
    classes = len(dep.model_metadata["labels"])
    inputs = [TensorSpec(name="image", datatype="UINT8", shape=[-1, -1, -1, 3])]
    if dep.model_metadata.get("problem_type") == "detection":
        return inputs, [
            TensorSpec(name="probability", datatype="FP32", shape=[-1, classes]),
            TensorSpec(name="detection_boxes", datatype="FP32", shape=[-1, -1, 4]),
            TensorSpec(name="detection_scores", datatype="FP32", shape=[-1, -1]),
            TensorSpec(name="detection_classes", datatype="INT64", shape=[-1, -1]),
            TensorSpec(name="num_detections", datatype="INT64", shape=[-1]),
        ]
    outputs = [
        TensorSpec(name="probability", datatype="FP32", shape=[-1, classes]),
        TensorSpec(name="prediction", datatype="BYTES", shape=[-1]),
        TensorSpec(name="prediction_classes", datatype="INT64", shape=[-1]),
    ]
    return inputs, outputs


def infer(
    state: ServiceState,
    space: SpaceRef,
    name: str,
    inputs: list[InputTensor],
    *,
    wanted: list[str] | None = None,
    log: bool = True,
) -> InferResult:
    """Score input ``image`` (UINT8 ``[N,H,W,3]`` or BYTES ``[N]`` of encoded files) with the
    space's deployment ``name``; answer the outputs in ``wanted`` (all when ``None``)."""
    dep = find_deployment(state, space, name)
    if wanted:
        names = [t.name for t in tensor_specs(dep)[1]]
        unknown = set(wanted) - set(names)
        if unknown:
            raise InvalidInputError(
                f"unknown outputs {sorted(unknown)}; this model has {', '.join(names)}"
            )
    tensor = _image_input(inputs)
    settings = state.settings
    if tensor.datatype == "BYTES":
        items = decode_files(list(tensor.decode()), settings)
    elif tensor.datatype != "UINT8":
        raise InvalidInputError(
            f"input {tensor.name!r} is {tensor.datatype}; send UINT8 [N, H, W, 3] pixels or "
            "BYTES [N] encoded image files"
        )
    elif len(tensor.shape) != 4 or tensor.shape[3] != 3:
        raise InvalidInputError(
            f"input {tensor.name!r} has shape {tensor.shape}; send UINT8 [N, H, W, 3] (RGB)"
        )
    else:
        check_count(tensor.shape[0])  # before decoding: N empty images cost nothing to send
        n, h, w = (int(x) for x in tensor.shape[:3])
        check_request_pixels([n * h * w], settings)
        pixels = tensor.decode()
        assert isinstance(pixels, np.ndarray)
        items = from_pixels(list(pixels), settings)
    scores = score(state, dep, items, log=log)
    labels = list(dep.model_metadata["labels"])
    probs = scores.probabilities.astype(np.float32)
    classes = probs.argmax(axis=1).astype(np.int64)
    n = len(classes)
    if scores.detections is not None:
        outputs = [OutputTensor("probability", "FP32", list(probs.shape), probs)]
        outputs += detection_tensors(scores.detections)
    else:
        outputs = [
            OutputTensor("probability", "FP32", list(probs.shape), probs),
            OutputTensor("prediction", "BYTES", [n], [labels[int(i)].encode() for i in classes]),
            OutputTensor("prediction_classes", "INT64", [n], classes),
        ]
    if wanted:
        outputs = [o for o in outputs if o.name in wanted]
    return InferResult(dep.name, outputs, scores.scoring_ids)


def detection_tensors(found: list[list[dict[str, Any]]]) -> list[OutputTensor]:
    """A batch's detections as the outputs :data:`DETECTION_OUTPUTS`."""
    n, k = len(found), max((len(d) for d in found), default=0)
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    classes = np.full((n, k), -1, np.int64)
    for i, dets in enumerate(found):
        for j, d in enumerate(dets):
            boxes[i, j], scores[i, j], classes[i, j] = d["box"], d["score"], d["class_index"]
    counts = np.array([len(d) for d in found], np.int64)
    return [
        OutputTensor("detection_boxes", "FP32", [n, k, 4], boxes),
        OutputTensor("detection_scores", "FP32", [n, k], scores),
        OutputTensor("detection_classes", "INT64", [n, k], classes),
        OutputTensor("num_detections", "INT64", [n], counts),
    ]


def _image_input(inputs: list[InputTensor]) -> InputTensor:
    named = [i for i in inputs if i.name == "image"]
    if named:
        return named[0]
    if len(inputs) == 1:
        return inputs[0]
    raise InvalidInputError("the request needs one input tensor named 'image'")
