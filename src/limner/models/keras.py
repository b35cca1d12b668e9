"""Keras 3 adapter: ``.keras`` files run on the PyTorch backend (no TensorFlow needed).

A ``.keras`` file carries no labels. When a ``limner-model.json`` (or ``NAME.json``) lies beside
it, that gives labels and preprocessing; otherwise they are derived from the model: the input
size from its input shape, labels ``class_0, class_1, ...``, the output kind from the last
layer's activation (softmax or sigmoid → probabilities, anything else → logits), and raw 0-255
pixels in NHWC float32 (Keras image models usually start with a ``Rescaling(1/255)`` layer).
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
    InputSpec,
    ModelMetadata,
    OutputKind,
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
        except Exception as exc:
            raise ModelError(f"{self.name}: the Keras model failed ({exc})") from exc
        if isinstance(out, (list, tuple)):
            out = out[0]
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return np.asarray(out, dtype=np.float32)

    def torch_forward(self) -> TorchForward | None:
        """On the torch backend, the Keras model itself is differentiable in torch (its layers
        are not hookable, so only Integrated Gradients applies)."""
        keras = _import_keras()
        if keras.backend.backend() != "torch":
            return None
        import torch

        from limner.models.gradients import TorchForward

        model = self._model
        weights = list(model.weights)
        device = weights[0].value.device if weights else torch.device("cpu")
        return TorchForward(
            module=model,
            metadata=self.metadata,
            device=device,
            hookable=False,
            call=lambda x: model(x, training=False),
        )


def _last_activation(model: Any) -> str:
    for layer in reversed(model.layers):
        activation = getattr(layer, "activation", None)
        if activation is not None:
            return str(getattr(activation, "__name__", activation)).lower()
        if type(layer).__name__ == "Softmax":
            return "softmax"
    return "linear"


def derive_metadata(model: Any, name: str, artifact: str = "model.keras") -> ModelMetadata:
    """Metadata read off a Keras model: input size, class count and output kind."""
    shape = tuple(model.inputs[0].shape) if model.inputs else ()
    if len(shape) != 4:
        raise InvalidInputError(
            f"{name}: expected an image input (batch, height, width, channels), got {shape}; "
            f"write a {METADATA_FILE} beside the model"
        )
    channels_first = shape[1] in (1, 3) and shape[3] not in (1, 3)
    height, width, channels = (shape[2], shape[3], shape[1]) if channels_first else shape[1:]
    if not height or not width:
        raise InvalidInputError(
            f"{name}: the model's input size is not fixed {shape}; "
            f"write a {METADATA_FILE} with the input width and height beside the model"
        )
    outputs = int(np.prod([d for d in model.outputs[0].shape[1:] if d]))
    activation = _last_activation(model)
    kind: OutputKind = "probabilities" if activation in ("softmax", "sigmoid") else "logits"
    n_classes = 2 if outputs == 1 else outputs
    return ModelMetadata(
        labels=[f"class_{i}" for i in range(n_classes)],
        input=InputSpec(
            width=int(width),
            height=int(height),
            channels=int(channels or 3),
            layout="NCHW" if channels_first else "NHWC",
            dtype="float32",
            scale=1.0,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
        ),
        output=kind,
        problem_type="binary" if n_classes == 2 else "multiclass",
        name=name,
        extra={"artifact": artifact, "framework": "keras"},
    )


def _metadata_beside(path: Path) -> ModelMetadata | None:
    for candidate in (path.with_suffix(".json"), path.parent / METADATA_FILE):
        if candidate.is_file():
            return ModelMetadata.read(candidate)
    return None


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


def load_keras(path: str | Path, metadata: ModelMetadata | None = None) -> Model:
    """Load a Keras 3 ``.keras`` classifier.

    Its ``config.json`` is sized before Keras reads it (:data:`MAX_CONFIG_BYTES`). Errors name
    the file, never the folder it lies in.

    Args:
        path: the ``.keras`` file.
        metadata: labels and preprocessing; default: a ``limner-model.json`` beside the file,
            else what the model itself tells (see the module notes).
    """
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as archive:
            check_config_size(archive, p.name)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{p.name}: not a loadable Keras model (not a zip archive)") from exc
    keras = _import_keras()
    try:
        model = keras.saving.load_model(str(p), compile=False, safe_mode=True)
    except Exception as exc:
        problem = without_folder(str(exc), p.parent)
        raise ModelError(f"{p.name}: not a loadable Keras model ({problem})") from exc
    name = p.stem
    meta = metadata or _metadata_beside(p) or derive_metadata(model, name, p.name)
    return KerasModel(model, meta, name=meta.name if meta.name != "model" else name)
