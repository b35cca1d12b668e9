"""Hugging Face image-classification directories (``config.json`` + ``model.safetensors``).

The network is built by ``transformers.AutoModelForImageClassification`` from the directory's
``config.json`` (never with ``trust_remote_code``: a config that names custom code is refused),
the weights come from safetensors only (a directory holding only pickled weights such as
``pytorch_model.bin``, or a safetensors index naming other shards, is refused), and nothing is
downloaded: importing this module switches the Hugging Face Hub off for the process
(``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, no Hub kernels), and configuration keys that make
transformers fetch code from the Hub (a Hub kernel as ``attn_implementation``, quantization,
kernel settings) are refused. Labels come from ``id2label``.

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
import os
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from limner.errors import (
    ForbiddenError,
    InvalidInputError,
    LimnerError,
    ModelError,
    PayloadTooLargeError,
)
from limner.models.metadata import (
    METADATA_FILE,
    InputSpec,
    ModelMetadata,
    Signature,
    complete,
    merge_hints,
    plain_text,
    without_folder,
)
from limner.models.pytorch import TorchModel

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS = ("model.safetensors", SAFETENSORS_INDEX)
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")

#: Largest JSON file of a directory limner reads (config, preprocessor settings, safetensors
#: index), in bytes: each is read whole and parsed into Python objects, many times its size.
MAX_JSON_BYTES = 8 * 1024 * 1024

#: ``attn_implementation`` values a configuration may name: PyTorch's own attention. Not
#: ``flash_attention_*``: without the flash-attn package, transformers fetches a kernel from the
#: Hub in its place; a ``namespace/repo`` value names a Hub kernel itself.
ATTENTION_IMPLEMENTATIONS = frozenset({"eager", "sdpa"})
#: ``experts_implementation`` values a configuration may name (the others are Hub kernels).
EXPERTS_IMPLEMENTATIONS = frozenset({"eager", "batched_mm", "grouped_mm"})
#: Configuration keys (at any depth) that make transformers reach beyond the installed code and
#: the directory: quantizers (other packages, Hub kernels), kernel and fusion settings.
REFUSED_CONFIG_KEYS = frozenset(
    {"quantization_config", "use_kernels", "kernel_config", "fusion_config"}
)

#: The Hub is off in every process that loads Hugging Face directories: set before transformers
#: (and huggingface_hub, which reads them once) is imported; ``USE_HUB_KERNELS=0`` stops
#: transformers from swapping layers for Hub kernels.
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "USE_HUB_KERNELS": "0",
}


def _hub_off() -> None:
    os.environ.update(_OFFLINE)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported before limner: it read the environment already
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


_hub_off()


def is_hf_directory(path: Path) -> bool:
    """Whether ``path`` looks like a Hugging Face (or timm) model directory."""
    return path.is_dir() and (path / CONFIG).is_file()


def detect_format(path: Path) -> str | None:
    """``"huggingface"`` for a directory :func:`limner.load_model` loads as one, else ``None``
    (a directory whose ``limner-model.json`` names an ``artifact``, or that holds a
    ``model.onnx``, is a limner model directory)."""
    return "huggingface" if loads_as_hf(path) else None


def loads_as_hf(path: Path) -> bool:
    """Whether ``path`` is a Hugging Face directory: a ``config.json``, and no
    ``limner-model.json`` naming another artifact (one without ``artifact`` beside no
    ``model.onnx`` gives metadata fields over the directory's own)."""
    if not is_hf_directory(path):
        return False
    meta = path / METADATA_FILE
    if not meta.exists():
        return True
    if (path / "model.onnx").exists():
        return False
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "artifact" not in data


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
    """safetensors weights beside the config; a directory holding only pickled weights, or a
    safetensors index that names anything but ``.safetensors`` files inside the directory, is
    refused with ``pickles`` (pickles are never read)."""
    if (path / SAFETENSORS_INDEX).exists():
        _check_index(path, shown, pickles)
    if any((path / name).is_file() for name in SAFETENSORS):
        return
    pickled = [name for name in PICKLES if (path / name).exists()]
    if pickled:
        raise pickles(
            f"{shown}: only pickled weights ({', '.join(pickled)}); limner loads safetensors "
            "only: save the model with save_pretrained(dir, safe_serialization=True)"
        )
    raise InvalidInputError(f"{shown}: no model.safetensors beside {CONFIG}")


def _check_index(path: Path, shown: str, refuse: type[LimnerError]) -> None:
    """The shards a ``model.safetensors.index.json`` names: ``.safetensors`` files inside the
    directory (transformers would unpickle a ``.bin`` shard, and open any path it is given)."""
    index = _read_json(path / SAFETENSORS_INDEX, shown)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise InvalidInputError(f"{shown}: {SAFETENSORS_INDEX} has no 'weight_map' object")
    base = path.resolve()
    for shard in set(map(str, weight_map.values())):
        rel = PurePosixPath(shard)
        inside = (
            shard.endswith(".safetensors")
            and "\\" not in shard
            and not rel.is_absolute()
            and ".." not in rel.parts
            and (base / rel).resolve().is_relative_to(base)
        )
        if not inside:
            shown_shard = shard if len(shard) <= 80 else shard[:80] + "..."
            raise refuse(
                f"{shown}: {SAFETENSORS_INDEX} names the shard {shown_shard!r}; limner reads "
                ".safetensors shards inside the directory only"
            )


def _read_json(path: Path, shown: str) -> Any:
    """The JSON file at ``path``, read only when it holds at most :data:`MAX_JSON_BYTES`
    (errors name the file as ``shown``/its name, never where it lies)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise PayloadTooLargeError(
                f"{shown}: {path.name} is larger than {MAX_JSON_BYTES} bytes"
            )
        with path.open("rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:  # it grew meanwhile
            raise PayloadTooLargeError(
                f"{shown}: {path.name} is larger than {MAX_JSON_BYTES} bytes"
            )
        return json.loads(raw)
    except (OSError, ValueError) as exc:
        problem = without_folder(str(exc), path.parent)
        raise InvalidInputError(f"{shown}: {path.name} is not readable JSON ({problem})") from exc


def _check_offline(config: dict[str, Any], where: str) -> None:
    """Refuse configuration keys (at any depth: sub-configs have their own) that make
    transformers fetch code or weights beyond the installed library and the directory."""
    for item in config_dicts(config):
        for key, value in item.items():
            if key.lstrip("_").removesuffix("_internal") == "attn_implementation":
                allowed = ATTENTION_IMPLEMENTATIONS
            elif key.lstrip("_").removesuffix("_internal") == "experts_implementation":
                allowed = EXPERTS_IMPLEMENTATIONS
            else:
                if key in REFUSED_CONFIG_KEYS and value:
                    raise ModelError(
                        f"{where}: {CONFIG} sets {key!r}; limner loads plain transformers "
                        "models only (no quantization, no kernels: they come from other "
                        "packages or from the Hugging Face Hub)"
                    )
                if key == "transformers_weights" and value is not None and value not in SAFETENSORS:
                    raise ModelError(
                        f"{where}: {CONFIG} names the weights file {str(value)[:80]!r}; limner "
                        f"reads {' or '.join(SAFETENSORS)} only"
                    )
                continue
            values = value.values() if isinstance(value, dict) else [value]
            for name in values:
                if name is not None and (not isinstance(name, str) or name not in allowed):
                    shown = str(name) if len(str(name)) <= 80 else str(name)[:80] + "..."
                    raise ModelError(
                        f"{where}: {CONFIG} sets {key!r} to {shown!r}; limner never downloads "
                        f"code (Hub kernels): use one of {', '.join(sorted(allowed))}"
                    )


def config_dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object nested anywhere in ``value`` (a parsed configuration), itself included."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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

    def signature(self) -> Signature:
        """The class count and channels of the model's configuration."""
        config = getattr(self.hf_model, "config", None)
        outputs = getattr(config, "num_labels", None)
        channels = getattr(config, "num_channels", None)
        return Signature(
            channels=int(channels) if isinstance(channels, int) else None,
            outputs=int(outputs) if isinstance(outputs, int) and outputs > 0 else None,
        )

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
    """The directory's ``config.json`` (at most :data:`MAX_JSON_BYTES`), refused when it needs
    code, names a kernel or quantizer (:func:`_check_offline`) or is a timm model (errors name
    the directory as ``shown``, by default its name: never where it lies)."""
    where = path.name if shown is None else shown
    config = _read_json(path / CONFIG, where)
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
    _check_offline(config, where)
    return config


def hf_metadata(path: Path, config: dict[str, Any]) -> ModelMetadata:
    """limner metadata from ``id2label`` and ``preprocessor_config.json``."""
    labels = _labels(config)
    proc: dict[str, Any] = {}
    if (path / PREPROCESSOR).is_file():
        proc = _read_json(path / PREPROCESSOR, path.name)
        if not isinstance(proc, dict):
            raise InvalidInputError(f"{path.name}: {PREPROCESSOR} must be a JSON object")
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
    path: str | Path,
    metadata: ModelMetadata | None = None,
    *,
    device: str = "cpu",
    given: dict[str, Any] | None = None,
    name: str | None = None,
) -> HFImageClassifier:
    """Load a transformers image-classification directory (safetensors weights only).

    ``metadata`` is used as it is; without it, ``given`` (metadata fields, any subset) over
    what the directory tells (:func:`hf_metadata`), named ``name`` where ``given`` names none.
    """
    p = Path(path)
    config = read_config(p)
    _check_weights(p, p.name, ModelError)
    if metadata is None:
        told = hf_metadata(p, config).to_dict()
        told["name"] = name or told["name"]
        metadata = complete(merge_hints(told, given or {}), what=p.name)
    meta = metadata
    try:
        from transformers import AutoModelForImageClassification
    except ImportError as exc:
        raise ModelError("Hugging Face models need transformers: pip install 'limner[hf]'") from exc
    _hub_off()  # again: whoever imported huggingface_hub since may have read the environment
    try:
        model = AutoModelForImageClassification.from_pretrained(
            str(p), trust_remote_code=False, use_safetensors=True, local_files_only=True
        )
    except Exception as exc:  # transformers names the directory by its full path
        problem = plain_text(without_folder(str(exc), p.parent))
        raise ModelError(
            f"{p.name}: not a loadable transformers image classifier ({problem})"
        ) from exc
    return HFImageClassifier(model, meta, device=device, name=meta.name)
