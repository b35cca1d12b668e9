"""Keras 3 adapter: ``.keras`` files run on the PyTorch backend (no TensorFlow needed).

A ``.keras`` file carries no labels. What the model tells is derived from it: the input size,
channels and layout from its input shape (channels-last, Keras' default, unless the shape says
otherwise), labels ``class_0, class_1, ...`` for its outputs, the output kind from the last
layer's activation (softmax or sigmoid → probabilities, anything else → logits), and raw 0-255
pixels in float32 (Keras image models usually start with a ``Rescaling(1/255)`` layer). A
``limner-model.json`` (or ``NAME.json``) beside it, or the deployment's metadata, gives any of
these fields over what the model tells (labels and ``problem_type`` alone are enough).

On the torch backend a Keras 3 model is a ``torch.nn.Module`` whose layers run through
``nn.Module.__call__``: every gradient method applies, Grad-CAM included (its layers output
channels-last feature maps).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from limner.errors import InvalidInputError, LimnerError, ModelError, PayloadTooLargeError
from limner.models.base import Model
from limner.models.gradients import TorchForward
from limner.models.metadata import (
    METADATA_FILE,
    Layout,
    ModelMetadata,
    OutputKind,
    Signature,
    complete,
    merge_hints,
    plain_text,
    read_metadata_dict,
    without_folder,
)

#: The configuration member of a ``.keras`` archive.
CONFIG = "config.json"
#: Largest ``config.json`` a ``.keras`` archive may hold, in bytes. Keras reads it whole and
#: parses it into Python objects (many times its size in memory: a 1.2 MB upload whose
#: configuration unpacks to a list of empty objects takes gigabytes); a real model's
#: configuration takes kilobytes, a large functional network's about a megabyte.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
#: The members Keras itself writes into a ``.keras`` archive (besides ``assets/``, which only
#: lookup and text-vectorization layers write). An archive with more than three members is
#: extracted whole to a temporary folder while Keras loads it.
KERAS_MEMBERS = frozenset({CONFIG, "metadata.json", "model.weights.h5", "model.weights.npz"})


def _import_keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        raise ModelError(
            "Keras models need the keras package: pip install 'limner[keras]'"
        ) from exc
    return keras


class KerasModel(Model):
    """A Keras 3 model run by its backend (PyTorch by default)."""

    preferred_batch_size = 32

    def __init__(self, model: Any, metadata: ModelMetadata, *, name: str | None = None) -> None:
        super().__init__(metadata, name=name)
        self._model = model

    def _forward(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self._model.predict_on_batch(x)
        except Exception as exc:  # Keras' messages carry terminal colour codes and newlines
            raise ModelError(
                f"{self.name}: the Keras model failed ({plain_text(str(exc))})"
            ) from exc
        if isinstance(out, (list, tuple)):
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return np.asarray(out, dtype=np.float32)

    def torch_forward(self) -> TorchForward | None:
        """On the torch backend, the Keras model itself is differentiable in torch, and its
        layers are torch modules whose forward hooks fire (Grad-CAM applies)."""
        keras = _import_keras()
        if keras.backend.backend() != "torch":
            return None
        import torch

        from limner.models.gradients import TorchForward

        model = self._model
        weights = list(model.weights)
        device = weights[0].value.device if weights else torch.device("cpu")
        layers = keras_layers(model)
        return TorchForward(
            module=model,
            metadata=self.metadata,
            device=device,
            call=lambda x: model(x, training=False),
            named_layers=layers,
            feature_layout=_feature_layout([layer for _, layer, _ in layers], self.metadata),
            kind="a Keras model",
        )

    def signature(self) -> Signature:
        """The fixed input size, channels and layout of the model, and its output count."""
        return keras_signature(self._model)


def keras_layers(model: Any, prefix: str = "") -> list[tuple[str, Any, bool]]:
    """Every layer of a Keras model, nested ones too, as ``(name, layer, is_leaf)``; a nested
    layer is named ``outer/inner``."""
    found: list[tuple[str, Any, bool]] = []
    for layer in _sublayers(model):
        if type(layer).__name__ == "InputLayer":
            continue
        name = f"{prefix}{layer.name}"
        inner = keras_layers(layer, name + "/")
        found.append((name, layer, not inner))
        found.extend(inner)
    return found


def _sublayers(layer: Any) -> list[Any]:
    flatten = getattr(layer, "_flatten_layers", None)
    if callable(flatten):
        try:
            return list(flatten(include_self=False, recursive=False))
        except TypeError:  # pragma: no cover - another Keras signature
            pass
    return list(getattr(layer, "layers", None) or [])


def _feature_layout(layers: list[Any], metadata: ModelMetadata) -> Layout:
    """The layout of the model's feature maps: its layers' ``data_format`` where they agree,
    else the input's."""
    formats = {getattr(layer, "data_format", None) for layer in layers} - {None}
    if formats == {"channels_first"}:
        return "NCHW"
    if formats == {"channels_last"}:
        return "NHWC"
    return metadata.input.layout


def _last_activation(model: Any) -> str:
    for layer in reversed(model.layers):
        activation = getattr(layer, "activation", None)
        if activation is not None:
            return str(getattr(activation, "__name__", activation)).lower()
        if type(layer).__name__ == "Softmax":
            return "softmax"
    return "linear"


def keras_signature(model: Any) -> Signature:
    """What a Keras model's input and output shapes fix (channels-last unless the shape has
    its channels first)."""
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    outputs = None
    if getattr(model, "outputs", None):
        dims = tuple(model.outputs[0].shape[1:])
        if dims and all(dims):
            outputs = int(np.prod(dims))
    if len(shape) != 4:
        return Signature(outputs=outputs)
    channels_first = shape[1] in (1, 3) and shape[3] not in (1, 3)
    height, width, channels = (shape[2], shape[3], shape[1]) if channels_first else shape[1:]
    shown = "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"
    return Signature(
        width=int(width) if width else None,
        height=int(height) if height else None,
        channels=int(channels) if channels else None,
        layout="NCHW" if channels_first else "NHWC",
        outputs=outputs,
        shape=shown,
    )


def derived_fields(model: Any, name: str, artifact: str = "model.keras") -> dict[str, Any]:
    """The metadata fields a Keras model tells (a ``limner-model.json`` form, maybe without
    the input size): see the module notes."""
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(shape) != 4:
        raise InvalidInputError(
            f"{name}: expected an image input (batch, height, width, channels), got {shape}; "
            f"write a {METADATA_FILE} beside the model"
        )
    sig = keras_signature(model)
    activation = _last_activation(model)
    kind: OutputKind = "probabilities" if activation in ("softmax", "sigmoid") else "logits"
    data: dict[str, Any] = {
        "input": {
            **sig.hints()["input"],
            "channels": sig.channels or 3,
            "dtype": "float32",
            "scale": 1.0,
            "mean": 0.0,
            "std": 1.0,
        },
        "output": kind,
        "name": name,
        "artifact": artifact,
        "framework": "keras",
    }
    if sig.outputs:
        n_classes = 2 if sig.outputs == 1 else sig.outputs
        data["labels"] = [f"class_{i}" for i in range(n_classes)]
        data["problem_type"] = "binary" if n_classes == 2 else "multiclass"
    return data


def derive_metadata(model: Any, name: str, artifact: str = "model.keras") -> ModelMetadata:
    """Metadata read off a Keras model: input size, class count and output kind."""
    return complete(derived_fields(model, name, artifact), what=name, signature=None)


def _metadata_beside(path: Path) -> dict[str, Any]:
    for candidate in (path.with_suffix(".json"), path.parent / METADATA_FILE):
        if candidate.is_file():
            return read_metadata_dict(candidate)
    return {}


def read_config(path: Path) -> Any:
    """The parsed ``config.json`` of the ``.keras`` archive at ``path``, read only when it
    holds at most :data:`MAX_CONFIG_BYTES` (declared, and counted while reading).

    Raises:
        PayloadTooLargeError: the configuration is larger.
        InvalidInputError: the file is not a readable ``.keras`` archive (errors name the
            file, not the folder it lies in).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            check_config_size(archive, path.name)
            with archive.open(CONFIG) as member:
                raw = member.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise _config_too_large(path.name)
        return json.loads(raw)
    except LimnerError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise InvalidInputError(f"{path.name}: not a readable .keras file") from exc


def check_config_size(archive: zipfile.ZipFile, shown: str) -> None:
    """Refuse (413) an archive whose ``config.json`` declares more than
    :data:`MAX_CONFIG_BYTES`, or (422) is compressed by another method than deflate (a bzip2
    or LZMA member inflates without bound on a single read); ``shown`` names the archive."""
    try:
        info = archive.getinfo(CONFIG)
    except KeyError:
        return  # Keras says what is missing
    if info.file_size > MAX_CONFIG_BYTES:
        raise _config_too_large(shown)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InvalidInputError(f"{shown}: {CONFIG} is compressed by a method limner does not read")


def _config_too_large(shown: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{shown}: the Keras configuration ({CONFIG}) is larger than {MAX_CONFIG_BYTES} bytes"
    )


def open_keras(path: Path) -> Any:
    """The Keras 3 model in the ``.keras`` file ``path``, loaded in safe mode (no code) after
    its ``config.json`` is sized (:data:`MAX_CONFIG_BYTES`); errors name the file only."""
    try:
        with zipfile.ZipFile(path) as archive:
            check_config_size(archive, path.name)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path.name}: not a loadable Keras model (not a zip archive)") from exc
    keras = _import_keras()
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        problem = plain_text(without_folder(str(exc), path.parent))
        raise ModelError(f"{path.name}: not a loadable Keras model ({problem})") from exc


def load_keras(
    path: str | Path,
    metadata: ModelMetadata | None = None,
    *,
    given: dict[str, Any] | None = None,
    name: str | None = None,
) -> Model:
    """Load a Keras 3 ``.keras`` classifier.

    Its ``config.json`` is sized before Keras reads it (:data:`MAX_CONFIG_BYTES`). Errors name
    the file, never the folder it lies in.

    Args:
        path: the ``.keras`` file.
        metadata: complete labels and preprocessing, used as they are.
        given: metadata fields (any subset) over what the model tells; default: a
            ``limner-model.json`` beside the file (see the module notes).
        name: the model's name where ``given`` names none (default: the file's stem).
    """
    p = Path(path)
    model = open_keras(p)
    if metadata is None:
        fields = _metadata_beside(p) if given is None else given
        told = derived_fields(model, name or p.stem, p.name)
        metadata = complete(
            merge_hints(told, fields), what=p.name, signature=keras_signature(model)
        )
    return KerasModel(model, metadata)
