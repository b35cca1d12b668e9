"""Hugging Face image-classification directories (``config.json`` + ``model.safetensors``).

The network is built by ``transformers.AutoModelForImageClassification`` from the directory's
``config.json`` (never with ``trust_remote_code``: a config that names custom code is refused),
the weights come from safetensors only (a directory holding only pickled weights such as
``pytorch_model.bin`` is refused), and nothing is downloaded. Labels come from ``id2label``.

Preprocessing comes from ``preprocessor_config.json`` (the ``AutoImageProcessor`` settings),
expressed as limner input settings: ``rescale_factor`` → ``scale``, ``image_mean`` /
``image_std`` → ``mean`` / ``std``, the input size from ``crop_size`` when the processor crops,
else from ``size`` (``height``/``width``, or a square of ``shortest_edge``). limner resizes
every image straight to that size (bilinear, area-averaging when shrinking); a processor that
resizes the shortest edge and then center-crops sees a slightly different view of a non-square
photo. Past the resize, the tensor is the processor's own.

timm directories (``config.json`` with ``architecture`` and ``pretrained_cfg``) are not
supported: timm needs torchvision, which limner leaves out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from limner.errors import ForbiddenError, InvalidInputError, LimnerError, ModelError
from limner.models.metadata import InputSpec, ModelMetadata
from limner.models.pytorch import TorchModel

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def is_hf_directory(path: Path) -> bool:
    """Whether ``path`` looks like a Hugging Face (or timm) model directory."""
    return path.is_dir() and (path / CONFIG).is_file()


def detect_format(path: Path) -> str | None:
    """``"huggingface"`` for a directory :func:`limner.load_model` loads as one, else ``None``
    (a directory with a ``limner-model.json`` is a limner model directory)."""
    if is_hf_directory(path) and not (path / "limner-model.json").exists():
        return "huggingface"
    return None


def check_directory(path: Path) -> None:
    """What a tenant's Hugging Face directory must be, checked before anything is loaded: a
    transformers config naming no custom code, and safetensors weights (no pickles are read).

    A directory that passes carries no code: the network's code comes from the installed
    transformers, the weights are tensors, the rest is JSON. Errors name the directory, not
    where the server unpacked it.
    """
    read_config(path, shown=path.name)
    _check_weights(path, path.name, ForbiddenError)


def _check_weights(path: Path, shown: str, pickles: type[LimnerError]) -> None:
    """safetensors weights beside the config; a directory holding only pickled weights is
    refused with ``pickles`` (they are never read)."""
    if any((path / name).is_file() for name in SAFETENSORS):
        return
    pickled = [name for name in PICKLES if (path / name).exists()]
    if pickled:
        raise pickles(
            f"{shown}: only pickled weights ({', '.join(pickled)}); limner loads safetensors "
            "only: save the model with save_pretrained(dir, safe_serialization=True)"
        )
    raise InvalidInputError(f"{shown}: no model.safetensors beside {CONFIG}")


class HFImageClassifier(TorchModel):
    """A transformers image classifier; ``module`` maps pixel values to logits, like any
    TorchScript module, and ``hf_model`` is the transformers model itself."""

    def __init__(
        self,
        hf_model: Any,
        metadata: ModelMetadata,
        *,
        device: str = "cpu",
        name: str | None = None,
    ) -> None:
        self.hf_model = hf_model
        super().__init__(_logits_module(hf_model), metadata, device=device, name=name)

    @property
    def module(self) -> Any:
        """The ``torch.nn.Module`` that maps an NCHW pixel tensor to logits."""
        return self._module


def _logits_module(hf_model: Any) -> Any:
    import torch

    class Logits(torch.nn.Module):
        """``pixel_values`` → ``logits`` of a transformers classifier."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=pixel_values).logits  # type: ignore[no-any-return]

    return Logits(hf_model)


def read_config(path: Path, shown: str | None = None) -> dict[str, Any]:
    """The directory's ``config.json``, refused when it needs code or is a timm model (errors
    name the directory as ``shown``, by default its path)."""
    where = path if shown is None else shown
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{where}: {CONFIG} is not readable JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise InvalidInputError(f"{where}: {CONFIG} must be a JSON object")
    if "model_type" not in config and ("architecture" in config or "pretrained_cfg" in config):
        raise ModelError(
            f"{where}: a timm model directory; timm models are not supported (timm needs "
            "torchvision, which limner does not install): export the model to ONNX instead"
        )
    if config.get("auto_map"):
        raise ModelError(
            f"{where}: the model needs its own Python code (auto_map); limner never runs "
            "code from a model directory"
        )
    if "model_type" not in config:
        raise InvalidInputError(f"{where}: {CONFIG} names no transformers model_type")
    return config


def hf_metadata(path: Path, config: dict[str, Any]) -> ModelMetadata:
    """limner metadata from ``id2label`` and ``preprocessor_config.json``."""
    labels = _labels(config)
    proc: dict[str, Any] = {}
    if (path / PREPROCESSOR).is_file():
        try:
            proc = json.loads((path / PREPROCESSOR).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: {PREPROCESSOR} is not readable JSON ({exc})") from exc
    width, height = _input_size(proc, config)
    rescale = float(proc.get("rescale_factor", 1 / 255)) if proc.get("do_rescale", True) else 1.0
    normalize = proc.get("do_normalize", True)
    mean = tuple(proc.get("image_mean") or (0.5, 0.5, 0.5)) if normalize else (0.0, 0.0, 0.0)
    std = tuple(proc.get("image_std") or (0.5, 0.5, 0.5)) if normalize else (1.0, 1.0, 1.0)
    channels = int(config.get("num_channels", 3))
    return ModelMetadata(
        labels=labels,
        input=InputSpec(
            width=width,
            height=height,
            channels=channels,
            layout="NCHW",
            dtype="float32",
            scale=rescale,
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
        ),
        output="logits",
        problem_type="binary" if len(labels) == 2 else "multiclass",
        name=path.name,
        extra={"framework": "transformers", "model_type": config["model_type"]},
    )


def _labels(config: dict[str, Any]) -> list[str]:
    id2label = config.get("id2label") or {}
    try:
        n = len(id2label) or int(config.get("num_labels", 2))
        raw = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidInputError(f"{CONFIG}: id2label must map 0..N-1 to names") from exc
    seen: set[str] = set()
    labels = []
    for i, label in enumerate(raw):
        labels.append(label if label not in seen else f"{label} ({i})")
        seen.add(labels[-1])
    return labels


def _input_size(proc: dict[str, Any], config: dict[str, Any]) -> tuple[int, int]:
    size = proc.get("crop_size") if proc.get("do_center_crop") else None
    size = size or proc.get("size") or config.get("image_size") or 224
    if isinstance(size, int | float):
        return int(size), int(size)
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return int(size["width"]), int(size["height"])
        if "shortest_edge" in size:
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise InvalidInputError(f"{PREPROCESSOR}: cannot read an input size from {size!r}")


def load_hf_directory(
    path: str | Path, metadata: ModelMetadata | None = None, *, device: str = "cpu"
) -> HFImageClassifier:
    """Load a transformers image-classification directory (safetensors weights only)."""
    p = Path(path)
    config = read_config(p)
    _check_weights(p, str(p), ModelError)
    meta = metadata or hf_metadata(p, config)
    try:
        from transformers import AutoModelForImageClassification
    except ImportError as exc:
        raise ModelError("Hugging Face models need transformers: pip install 'limner[hf]'") from exc
    try:
        model = AutoModelForImageClassification.from_pretrained(
            str(p), trust_remote_code=False, use_safetensors=True, local_files_only=True
        )
    except Exception as exc:
        raise ModelError(f"{p}: not a loadable transformers image classifier ({exc})") from exc
    return HFImageClassifier(model, meta, device=device, name=meta.name)
