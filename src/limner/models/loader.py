"""``load_model(spec)``: one entry point for every kind of model spec."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from limner.errors import InvalidInputError
from limner.models.base import Model
from limner.models.metadata import METADATA_FILE, ModelMetadata
from limner.models.pytorch import resolve_device
from limner.models.zoo import BUILTIN_MODELS, load_builtin

if TYPE_CHECKING:
    import httpx

SPECS_HELP = (
    "a built-in name (efficientnet-lite0), a .onnx file, a model directory, a .keras file, "
    "a .pt TorchScript file, or an http(s)://host/v2/models/NAME URL"
)


def load_model(
    spec: str | Path,
    *,
    device: str = "auto",
    metadata: ModelMetadata | None = None,
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
) -> Model:
    """Load a classifier from a model spec (the specs are listed in docs/result.md).

    Args:
        spec: built-in name, path, or Open Inference URL.
        device: ``auto``, ``cpu`` or ``cuda``.
        metadata: labels and preprocessing; read from ``limner-model.json`` beside the model
            when not given.
        headers: extra HTTP headers for a remote model (an ``Authorization`` key, say).
        client: the HTTP client of a remote model (the service's reaches allowed addresses
            only); default a plain one.
    """
    text = str(spec)
    dev = resolve_device(device)
    if text in BUILTIN_MODELS:
        return load_builtin(text, device=dev)
    if text.startswith(("http://", "https://")):
        from limner.models.remote import RemoteModel

        return RemoteModel(text, metadata, headers=headers, client=client)
    path = Path(text)
    if not path.exists():
        raise InvalidInputError(f"model {text!r} not found: give {SPECS_HELP}")
    if path.is_dir():
        meta = metadata or ModelMetadata.read(path / METADATA_FILE)
        artifact = artifact_path(path, meta)
        if not artifact.exists():
            raise InvalidInputError(f"{path}: model directory has no {artifact.name}")
        return _load_file(artifact, meta, dev)
    return _load_file(path, metadata, dev)


def artifact_path(directory: Path, meta: ModelMetadata) -> Path:
    """The file a model directory's metadata names (``artifact``, default ``model.onnx``).

    It must lie inside the directory: a relative path without ``..`` (checked on the name, so
    the answer does not depend on what exists on disk).
    """
    name = str(meta.extra.get("artifact", "model.onnx"))
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or ".." in rel.parts or ":" in name:
        raise InvalidInputError(
            f"{METADATA_FILE}: 'artifact' must name a file inside the model directory"
        )
    return directory / rel


def _load_file(path: Path, metadata: ModelMetadata | None, device: str) -> Model:
    suffix = path.suffix.lower()
    if suffix == ".keras":
        from limner.models.keras import load_keras

        return load_keras(path, metadata)
    meta = metadata or _metadata_beside(path)
    meta = _named(meta, path)
    if suffix == ".onnx":
        from limner.models.onnx import OnnxModel

        return OnnxModel(path, meta, device=device)
    if suffix in (".pt", ".pth", ".torchscript"):
        from limner.models.pytorch import load_torchscript

        return load_torchscript(path, meta, device=device)
    raise InvalidInputError(f"{path}: unknown model format {suffix!r}; give {SPECS_HELP}")


def _metadata_beside(path: Path) -> ModelMetadata:
    for candidate in (path.with_suffix(".json"), path.parent / METADATA_FILE):
        if candidate.exists() and candidate.name != path.name:
            return ModelMetadata.read(candidate)
    raise InvalidInputError(
        f"{path}: no {METADATA_FILE} beside the model; write one with labels and input settings"
    )


def _named(meta: ModelMetadata, path: Path) -> ModelMetadata:
    if meta.name != "model":
        return meta
    return ModelMetadata(
        labels=meta.labels,
        input=meta.input,
        output=meta.output,
        problem_type=meta.problem_type,
        name=path.stem if path.stem != "model" else path.parent.name,
        extra=meta.extra,
    )
