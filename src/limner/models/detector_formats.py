"""Object detectors of every format limner loads classifiers from, read through one decoder.

Each loader turns its model into a function from a preprocessed batch to named outputs, which
:func:`limner.models.onnx_detector.outputs_detector` reads as the metadata's ``detection`` block
says (``nms`` or ``raw`` layout, box format):

- **Keras** (``.keras``): the outputs by the model's output names (a dict output by its keys);
- **TorchScript** (admin uploads and the CLI): a tuple output in the order the layout reads
  (``boxes, scores, labels``, or ``raw``), or a dict by its keys;
- **Hugging Face object-detection directories** (DETR, YOLOS, ... with safetensors weights):
  ``logits`` and ``pred_boxes``, read as a raw head (the no-object class dropped, boxes
  ``cxcywh`` normalized); labels and input come from the directory, as for its classifiers;
- **Open Inference URLs**: the outputs by name from ``POST {url}/infer`` (limner's own ``/v2``
  answers a detector's ``detection_boxes``, ``detection_scores``, ``detection_classes``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from limner.errors import InvalidInputError, ModelError, ModelUnavailableError
from limner.models.detection import Detector
from limner.models.detector_gradients import DetectorForward
from limner.models.metadata import plain_text, without_folder
from limner.models.onnx_detector import (
    check_outputs,
    detector_metadata,
    outputs_detector,
    wanted_outputs,
)

Run = Callable[[np.ndarray], dict[str, np.ndarray]]
#: A Hugging Face detector's class scores below this are not candidates (its own default).
HF_SCORE_THRESHOLD = 0.5


def keras_detector(path: Path, metadata: dict[str, Any]) -> Detector:
    """A Keras 3 detector (``.keras``, loaded in safe mode, its configuration sized first)."""
    from limner.models.keras import open_keras

    spec = detector_metadata(metadata)[1]
    model = open_keras(path)
    names = [str(n) for n in getattr(model, "output_names", None) or []]
    check_outputs(spec, set(names))

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        out = model.predict_on_batch(x)  # numpy arrays, whatever the backend
        return _named(out, names, path.name)

    return outputs_detector(run, metadata, batched=True, shown=path.name)


def torchscript_detector(path: Path, metadata: dict[str, Any]) -> Detector:
    """A TorchScript detector saved with ``torch.jit.save`` (an admin's, or the CLI's)."""
    import torch

    detector_metadata(metadata)
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        problem = plain_text(without_folder(str(exc), path.parent))
        raise ModelError(f"{path.name}: not a loadable TorchScript model ({problem})") from exc
    return torch_detector(module, metadata, shown=path.name)


def torch_detector(module: Any, metadata: dict[str, Any], *, shown: str = "detector") -> Detector:
    """A detector of a ``torch.nn.Module`` or TorchScript module taking the metadata's
    preprocessed input: a tuple output in the order the layout reads (``boxes, scores,
    labels``, or ``raw``), or a dict by its keys. It keeps its differentiable forward, so the
    gradient methods explain its boxes too."""
    import torch

    names = wanted_outputs(detector_metadata(metadata)[1])

    def outputs(x: Any) -> dict[str, Any]:
        out = module(x)
        return _named((out,) if isinstance(out, torch.Tensor) else out, names, shown, keep=True)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = outputs(torch.from_numpy(np.ascontiguousarray(x)))
        return {k: v.detach().cpu().numpy() for k, v in out.items()}

    scripted = isinstance(module, torch.jit.ScriptModule)
    forward = DetectorForward(
        module,
        outputs,
        metadata,
        hookable=not scripted,
        kind="a TorchScript detector" if scripted else "a PyTorch detector",
    )
    return outputs_detector(run, metadata, batched=True, shown=shown, forward=forward)


def is_hf_detector(path: Path) -> bool:
    """Whether ``path`` is a Hugging Face object-detection directory."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file()):
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    archs = data.get("architectures") if isinstance(data, dict) else None
    return isinstance(archs, list) and any(str(a).endswith("ForObjectDetection") for a in archs)


def hf_detector_metadata(path: Path, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Hugging Face detector's ``limner-model.json``: its labels and input (as its
    classifiers'), a raw layout of ``cxcywh`` normalized boxes, and ``given`` over them."""
    from limner.models.huggingface import hf_metadata, read_config

    meta = hf_metadata(path, read_config(path)).to_dict()
    meta.update(
        {
            "problem_type": "detection",
            "detection": {
                "layout": "raw",
                "raw": "output0",
                "box_format": "cxcywh",
                "normalized": True,
                "score_threshold": HF_SCORE_THRESHOLD,
            },
        }
    )
    meta.pop("output", None)
    meta.pop("extra", None)
    return {**meta, **(given or {})}


def hf_detector(path: Path, metadata: dict[str, Any]) -> Detector:
    """A transformers object detector (safetensors weights only, no code from the directory):
    its ``logits`` (N, Q, C + 1) and ``pred_boxes`` (N, Q, 4) read as one raw head."""
    import torch

    from limner.models.huggingface import _check_weights, _hub_off, read_config

    read_config(path)
    _check_weights(path, path.name, ModelError)
    try:
        from transformers import AutoModelForObjectDetection
    except ImportError as exc:
        raise ModelError("Hugging Face models need transformers: pip install 'limner[hf]'") from exc
    _hub_off()
    try:
        model = AutoModelForObjectDetection.from_pretrained(
            str(path), trust_remote_code=False, use_safetensors=True, local_files_only=True
        ).eval()
    except Exception as exc:
        problem = plain_text(without_folder(str(exc), path.parent))
        raise ModelError(f"{path.name}: not a loadable transformers detector ({problem})") from exc
    raw_name = detector_metadata(metadata)[1].raw

    def outputs(x: Any) -> dict[str, Any]:
        out = model(pixel_values=x)
        scores = out.logits.softmax(-1)[..., :-1]  # the last class is "no object"
        return {raw_name: torch.cat([out.pred_boxes, scores], dim=-1)}  # (N, Q, 4 + C)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            raw = outputs(torch.from_numpy(np.ascontiguousarray(x)))[raw_name]
        return {raw_name: raw.float().cpu().numpy()}

    forward = DetectorForward(model, outputs, metadata, kind="a Hugging Face detector")
    return outputs_detector(run, metadata, batched=True, shown=path.name, forward=forward)


def remote_detector(
    url: str,
    metadata: dict[str, Any],
    *,
    client: httpx.Client | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Detector:
    """A detector behind an Open Inference URL: the metadata says its labels, input and
    output names (nothing is guessed); each call posts the preprocessed batch as JSON."""
    from limner.models.remote import MAX_REMOTE_ANSWER_BYTES, MAX_REMOTE_METADATA_BYTES
    from limner.net import AnswerRefusedError, DeadlineExceededError, read_bounded
    from limner.protocol import DATATYPE_OF, ResponseOutput, decode_value, unpack_binary

    spec = detector_metadata(metadata)[1]
    base = url.rstrip("/")
    http = client or httpx.Client(timeout=timeout)
    sent = dict(headers or {})
    wanted = wanted_outputs(spec)

    def send(method: str, target: str, max_bytes: int, **kwargs: Any) -> Any:
        kwargs["headers"] = {**sent, **kwargs.get("headers", {})}
        try:
            return read_bounded(
                http, method, target, seconds=timeout, max_bytes=max_bytes, **kwargs
            )
        except (DeadlineExceededError, httpx.HTTPError) as exc:
            raise ModelUnavailableError(f"{base}: cannot be reached ({exc})") from exc
        except AnswerRefusedError as exc:
            raise ModelError(f"{base}: {exc}") from exc

    described = send("GET", base, MAX_REMOTE_METADATA_BYTES)
    if described.status_code != 200:
        raise ModelError(f"{base}: metadata request answered {described.status_code}")
    try:
        inputs = described.json().get("inputs") or [{}]
        input_name = str(inputs[0].get("name") or "image")
    except (ValueError, AttributeError, TypeError, IndexError) as exc:
        raise ModelError(f"{base}: not an Open Inference model's metadata") from exc

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        tensor = {"name": input_name, "shape": list(x.shape), "datatype": DATATYPE_OF[x.dtype]}
        body = {
            "inputs": [{**tensor, "data": x.reshape(-1).tolist()}],
            "outputs": [{"name": n} for n in wanted],
            "parameters": {"log": False},
        }
        resp = send(
            "POST",
            f"{base}/infer",
            MAX_REMOTE_ANSWER_BYTES,
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
        )
        if resp.status_code != 200:
            raise ModelError(f"{base}: inference answered {resp.status_code}")
        try:
            message, raws = unpack_binary(resp.content, None, "outputs")
            outputs = [ResponseOutput.model_validate(o) for o in message["outputs"]]
            return {
                o.name: np.asarray(decode_value(o, raws.get(o.name)), dtype=np.float64)
                for o in outputs
            }
        except Exception as exc:
            raise ModelError(f"{base}: not an Open Inference response") from exc

    def checked_run(x: np.ndarray) -> dict[str, np.ndarray]:
        out = run(x)
        check_outputs(spec, set(out))
        return out

    return outputs_detector(checked_run, metadata, batched=True, shown=base)


def _named(out: Any, names: list[str], shown: str, *, keep: bool = False) -> dict[str, Any]:
    """A model's outputs (a dict, or a sequence in ``names``' order) by name, as numpy arrays
    (``keep``: as they are, tensors say)."""
    as_is: Callable[[Any], Any] = (lambda v: v) if keep else np.asarray
    if isinstance(out, dict):
        return {str(k): as_is(v) for k, v in out.items()}
    seq = list(out) if isinstance(out, list | tuple) else [out]
    if len(seq) < len(names):
        raise InvalidInputError(
            f"{shown}: {len(seq)} outputs, but the detection layout reads {len(names)} "
            f"({', '.join(names)})"
        )
    return {n: as_is(v) for n, v in zip(names, seq, strict=False)}
