"""limner methods as a Quantus ``explain_func``: evaluate any of them with Quantus in one line.

Quantus (0.6) calls ``explain_func(model=..., inputs=..., targets=..., **explain_func_kwargs)``
with a batch of the model's inputs (float, ``(N, C, H, W)``, normalised the model's way) and
wants attributions back of the same shape, or with a channel axis of size 1. This one turns the
inputs back into RGB pixels, explains each image with ``limner.explain`` and returns each
explanation's :meth:`~limner.explain.Explanation.attribution_map` at the inputs' size::

    import quantus
    import limner.quantus
    from limner.models import builtin_torch_module

    net = builtin_torch_module()
    x = net.preprocess(photos)
    y = net.module(torch.from_numpy(x)).argmax(1).numpy()
    scores = quantus.FaithfulnessCorrelation(nr_runs=10, subset_size=224)(
        model=net.module, x_batch=x, y_batch=y, explain_func=limner.quantus.explain_func,
        explain_func_kwargs={"method": "gradcam"},
    )

Which model limner explains: the one Quantus hands over, so that randomisation metrics
(ModelParameterRandomisation, whose model has randomised layers) see the model they changed. A
``torch.nn.Module`` is wrapped with ``metadata`` (default: the built-in model's); a module that
is the built-in network with its pretrained weights unchanged is explained by the built-in
model itself (the same network, on ONNX Runtime on the CPU: about 12× faster than eager
PyTorch). ``limner_model`` overrides all of this.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from limner.errors import InvalidInputError
from limner.explain import explain
from limner.explain.engine import DEFAULT_METHOD
from limner.models.base import Model
from limner.models.metadata import ModelMetadata
from limner.models.zoo import EFFICIENTNET_LITE0, efficientnet_lite0_metadata

#: ``limner.explain`` settings explain_func passes on (the classes and image come from Quantus).
SETTINGS = tuple(
    name
    for name in inspect.signature(explain).parameters
    if name not in ("image", "model", "classes", "top_k", "predict", "progress", "regions")
)

_loaded: dict[tuple[str, str], Model] = {}
_pristine: dict[str, Any] = {}


def explain_func(
    model: Any,
    inputs: Any,
    targets: Any,
    *,
    method: str = DEFAULT_METHOD,
    limner_model: Model | str | None = None,
    metadata: ModelMetadata | None = None,
    to_rgb: Callable[[np.ndarray], np.ndarray] | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    scale: float | None = None,
    channel_first: bool | None = None,
    device: Any = None,
    **settings: Any,
) -> np.ndarray:
    """Attributions of ``targets`` for a batch of ``inputs`` by a limner method (Quantus's
    ``explain_func`` contract).

    Args:
        model: the model Quantus evaluates: a ``torch.nn.Module``, a limner ``Model``, or None
            (the built-in ``efficientnet-lite0``).
        inputs: float array or tensor ``(N, C, H, W)`` (or ``(N, H, W, C)``), normalised the
            model's way.
        targets: the class index of each input, ``(N,)`` (or one int for all).
        method: any limner method (``kernelshap``, ``lime``, ``occlusion``, ``rise``,
            ``integrated-gradients``, ``gradcam``).
        limner_model: explain with this model instead of ``model`` (a loaded ``Model`` or a
            model spec such as ``efficientnet-lite0``).
        metadata: how a ``torch.nn.Module`` ``model`` takes its input (labels, input size and
            normalisation; default: the built-in model's).
        to_rgb: turns a batch of ``inputs`` (as given) into RGB pixels ``(N, H, W, 3)``, 0..255;
            default: the inverse of ``(pixel × scale − mean) / std``.
        mean, std, scale: that normalisation, per channel or one for all (default: the limner
            model's own; the built-in's is ``(pixel − 127) / 128``).
        channel_first: the layout of ``inputs`` (default: inferred from the shape).
        device: where a wrapped ``torch.nn.Module`` runs (Quantus passes its ``device``).
        **settings: more ``limner.explain`` settings: ``samples``, ``max_samples``,
            ``segmentation``, ``segments``, ``baseline``, ``seed``, ``steps``, ``layer``, …

    Returns:
        float32 attributions ``(N, 1, H, W)`` (``(N, H, W, 1)`` for channel-last inputs): each
        image's :meth:`~limner.explain.Explanation.attribution_map` for its target class.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise InvalidInputError(
            f"explain_func does not take {', '.join(unknown)}; limner settings: "
            f"{', '.join(SETTINGS)}"
        )
    x = _numpy(inputs)
    if x.ndim != 4:
        raise InvalidInputError(f"inputs must be a batch of images (N, C, H, W), not {x.shape}")
    first = _channel_first(x) if channel_first is None else bool(channel_first)
    n, h, w = (x.shape[0], *x.shape[2:]) if first else x.shape[:3]
    wanted = np.asarray(_numpy(targets), dtype=np.int64).reshape(-1)
    if len(wanted) not in (1, n):
        raise InvalidInputError(f"{len(wanted)} targets for {n} inputs: give one per input")
    labels = np.broadcast_to(wanted, (n,))
    clf = _limner_model(model, limner_model, metadata, device)
    rgb = (
        _pixels(to_rgb(x), n, h, w)
        if to_rgb is not None
        else _unnormalise(x if first else x.transpose(0, 3, 1, 2), clf, mean, std, scale)
    )
    maps = np.empty((n, h, w), np.float32)
    for i in range(n):
        c = int(labels[i])
        exp = explain(rgb[i], clf, method=method, classes=[c], **settings)
        maps[i] = exp.attribution_map(h, w, class_index=c)
    return maps[:, None] if first else maps[..., None]


def _numpy(value: Any) -> np.ndarray:
    """An array from a numpy array, a torch tensor (any device) or a number."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _channel_first(x: np.ndarray) -> bool:
    """Quantus's own rule: channels first unless only the last axis looks like channels."""
    return not (x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3))


def _pixels(rgb: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    out = np.asarray(rgb)
    if out.shape != (n, h, w, 3):
        raise InvalidInputError(
            f"to_rgb must return (N, H, W, 3) = {(n, h, w, 3)}, not {out.shape}"
        )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if out.dtype != np.uint8 else out


def _unnormalise(
    x: np.ndarray,
    clf: Model,
    mean: float | Sequence[float] | None,
    std: float | Sequence[float] | None,
    scale: float | None,
) -> np.ndarray:
    """RGB uint8 ``(N, H, W, 3)`` from normalised ``(N, C, H, W)`` inputs: the inverse of
    ``(pixel × scale − mean) / std`` (one channel becomes gray RGB)."""
    spec = clf.metadata.input
    c = x.shape[1]
    if c not in (1, 3):
        raise InvalidInputError(f"inputs must have 1 or 3 channels, not {c}; pass to_rgb")

    def per_channel(value: float | Sequence[float] | None, default: Sequence[float]) -> np.ndarray:
        v = np.asarray(default if value is None else value, dtype=np.float32).reshape(-1)
        return np.broadcast_to(v[:c] if len(v) >= c else v[:1], (c,))[None, :, None, None]

    s = np.float32(spec.scale if scale is None else scale)
    pixels = (x.astype(np.float32) * per_channel(std, spec.std) + per_channel(mean, spec.mean)) / s
    rgb = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.repeat(rgb, 3, axis=3) if c == 1 else np.ascontiguousarray(rgb)


def _limner_model(
    model: Any, override: Model | str | None, metadata: ModelMetadata | None, device: Any
) -> Model:
    """The limner model that explains: the override, a limner model, the built-in for its own
    unchanged module (or None), or the torch module wrapped as it is."""
    if override is not None:
        return override if isinstance(override, Model) else _load(str(override), device)
    if isinstance(model, Model):
        return model
    if model is None or (metadata is None and _is_builtin(model)):
        return _load(EFFICIENTNET_LITE0, device)
    if not hasattr(model, "state_dict"):
        raise InvalidInputError(
            f"explain_func takes a torch.nn.Module or a limner Model, not {type(model).__name__}"
        )
    from limner.models.pytorch import TorchModel

    where = _device(device) or str(next(iter(model.parameters())).device.type)
    meta = metadata or efficientnet_lite0_metadata()
    return TorchModel(model, meta, device=where, name=meta.name)


def _device(device: Any) -> str | None:
    """``cpu`` or ``cuda`` from what Quantus passes (``"cuda:0"``, a ``torch.device``)."""
    if device is None:
        return None
    kind = str(getattr(device, "type", device)).split(":")[0]
    return "cuda" if kind in ("cuda", "gpu") else "cpu"


def _load(spec: str, device: Any) -> Model:
    """A model loaded once per spec and device."""
    from limner.models.loader import load_model

    where = _device(device) or "cpu"
    key = (spec, where)
    if key not in _loaded:
        _loaded[key] = load_model(spec, device=where)
    return _loaded[key]


def _is_builtin(module: Any) -> bool:
    """Whether ``module`` is the built-in network with its pretrained weights, unchanged."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:  # pragma: no cover - a declared dependency
        return False
    if not isinstance(module, EfficientNet):
        return False
    import torch

    if "state" not in _pristine:
        from limner.models.zoo import efficientnet_lite0_module

        _pristine["state"] = efficientnet_lite0_module().state_dict()
    reference = _pristine["state"]
    state = module.state_dict()
    if state.keys() != reference.keys():
        return False
    with torch.no_grad():
        return all(
            v.shape == reference[k].shape and torch.equal(v.detach().cpu(), reference[k])
            for k, v in state.items()
        )
