"""``load_model(spec)``: one entry point for every kind of model spec."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from limner.errors import InvalidInputError
from limner.models.base import Model
from limner.models.metadata import METADATA_FILE, ModelMetadata, with_hints
from limner.models.pytorch import resolve_device
from limner.models.remote_grpc import is_grpc_url
from limner.models.zoo import BUILTIN_MODELS, load_builtin

if TYPE_CHECKING:
    import httpx

SPECS_HELP = (
    "a built-in name (efficientnet-lite0), a .onnx file, a model directory, a .keras file, "
    "a .pt TorchScript file, a Hugging Face image-classification directory, "
    "an http(s)://host/v2/models/NAME URL, or a grpc://host:port/NAME URL"
)


def load_model(
    spec: str | Path,
    *,
    device: str = "auto",
    metadata: ModelMetadata | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
) -> Model:
    """Load a classifier from a model spec (the specs are listed in docs/api.md, "Model specs").

    Args:
        spec: built-in name, path (``.onnx``, ``.keras``, ``.pt``, a model directory, a Hugging
            Face directory), or Open Inference URL (``http(s)://host/v2/models/NAME``, or
            ``grpc://host:port/NAME`` for the protocol's gRPC side).
        device: ``auto``, ``cpu`` or ``cuda``.
        metadata: labels and preprocessing. A :class:`ModelMetadata` replaces what the model
            would get; a dict (the fields of a ``limner-model.json``, any subset: ``labels``,
            ``input`` with ``width``/``height``/``layout``/``scale``/``mean``/``std``,
            ``output``) fills in or overrides what the model or its server tells. Default:
            ``limner-model.json`` beside the model, or what the model tells itself.
        headers: extra HTTP headers for a remote model (an ``Authorization`` key, say).
        client: the HTTP client of a remote model (the service's reaches allowed addresses
            only); default a plain one.
    """
    text = str(spec)
    full, hints = (metadata, None) if not isinstance(metadata, dict) else (None, metadata)
    if is_grpc_url(text):
        if client is not None:  # the service reaches tenants' URLs through its guard only
            raise InvalidInputError("gRPC model URLs are for the CLI and the library")
        from limner.models.remote_grpc import GrpcRemoteModel

        return GrpcRemoteModel(text, full, hints=hints, headers=headers)
    if text.startswith(("http://", "https://")):
        from limner.models.remote import RemoteModel

        return RemoteModel(text, full, hints=hints, headers=headers, client=client)
    if hints is not None and "labels" in hints and "width" in (hints.get("input") or {}):
        full, hints = ModelMetadata.from_dict({"name": "model", **hints}), None
    model = _load_local(text, resolve_device(device), full)
    if hints:
        model.metadata = with_hints(model.metadata, hints)
    return model


def _load_local(text: str, dev: str, metadata: ModelMetadata | None) -> Model:
    if text in BUILTIN_MODELS:
        return load_builtin(text, device=dev)
    path = Path(text)
    if not path.exists():
        raise InvalidInputError(f"model {text!r} not found: give {SPECS_HELP}")
    if path.is_dir() and not (path / METADATA_FILE).exists():
        from limner.models.huggingface import is_hf_directory, load_hf_directory

        if is_hf_directory(path):
            return load_hf_directory(path, metadata, device=dev)
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
