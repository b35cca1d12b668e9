"""``load_model(spec)``: one entry point for every kind of model spec."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from limner.errors import InvalidInputError
from limner.models.base import Model
from limner.models.metadata import (
    METADATA_FILE,
    ModelMetadata,
    merge_hints,
    read_metadata_dict,
    with_hints,
)
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
    name: str | None = None,
    verify: bool = False,
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
            ``output``) fills in or overrides what a ``limner-model.json`` beside the model,
            the model itself or its server tells. Default: ``limner-model.json`` beside the
            model over what the model tells (a Keras model's input shape and layout, an ONNX
            graph's fixed dimensions, a Hugging Face configuration); what is still missing is
            named in one message.
        headers: extra HTTP headers for a remote model (an ``Authorization`` key, say).
        client: the HTTP client of a remote model (the service's reaches allowed addresses
            only); default a plain one.
        name: what the model is called where its metadata names nothing (the service passes
            the deployment's name); default: the file's or directory's name, or the built-in's.
        verify: check the model against its metadata and score two synthetic images with it
            (:func:`limner.models.checks.verify_model`): a mismatch is an
            :class:`~limner.errors.InvalidInputError` naming the field.
    """
    text = str(spec)
    full, hints = (metadata, None) if not isinstance(metadata, dict) else (None, metadata)
    explicit = bool(hints and hints.get("name")) or (full is not None and full.name != "model")
    if is_grpc_url(text):
        if client is not None:  # the service reaches tenants' URLs through its guard only
            raise InvalidInputError("gRPC model URLs are for the CLI and the library")
        from limner.models.remote_grpc import GrpcRemoteModel

        model: Model = GrpcRemoteModel(text, full, hints=hints, headers=headers)
    elif text.startswith(("http://", "https://")):
        from limner.models.remote import RemoteModel

        model = RemoteModel(text, full, hints=hints, headers=headers, client=client)
    else:
        model, named = _load_local(text, resolve_device(device), full, hints)
        explicit = explicit or named
    if name and not explicit:
        model.rename(name)
    if verify:
        from limner.models.checks import verify_model

        try:
            verify_model(model)
        except BaseException:
            model.close()
            raise
    return model


def _load_local(
    text: str, dev: str, full: ModelMetadata | None, hints: dict[str, Any] | None
) -> tuple[Model, bool]:
    """The model at ``text`` and whether its metadata (a file beside it, the hints) names it."""
    if text in BUILTIN_MODELS:
        model = load_builtin(text, device=dev)
        if hints:
            model.metadata = with_hints(model.metadata, hints)
            model.name = model.metadata.name
        return model, False
    path = Path(text)
    if not path.exists():
        raise InvalidInputError(f"model {text!r} not found: give {SPECS_HELP}")
    if path.is_dir():
        from limner.models.huggingface import load_hf_directory, loads_as_hf

        meta_file = path / METADATA_FILE
        read = full is None and meta_file.exists()  # full metadata needs no file
        given = merge_hints(read_metadata_dict(meta_file) if read else {}, hints)
        if loads_as_hf(path):
            hf = load_hf_directory(path, full, device=dev, given=given)
            return hf, bool(given.get("name"))
        if full is None and not meta_file.exists():
            raise InvalidInputError(f"{path.name}: the model directory holds no {METADATA_FILE}")
        artifact = artifact_path(path, full if full is not None else given)
        if not artifact.exists():
            raise InvalidInputError(f"{path.name}: model directory has no {artifact.name}")
        return _load_file(artifact, full, given, dev)
    return _load_file(path, full, merge_hints(_metadata_beside(path), hints), dev)


def artifact_path(directory: Path, meta: ModelMetadata | dict[str, Any]) -> Path:
    """The file a model directory's metadata names (``artifact``, default ``model.onnx``).

    It must lie inside the directory: a relative path without ``..`` (checked on the name, so
    the answer does not depend on what exists on disk).
    """
    extra = meta.extra if isinstance(meta, ModelMetadata) else meta
    name = str(extra.get("artifact", "model.onnx"))
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or ".." in rel.parts or ":" in name:
        raise InvalidInputError(
            f"{METADATA_FILE}: 'artifact' must name a file inside the model directory"
        )
    return directory / rel


def _load_file(
    path: Path, full: ModelMetadata | None, given: dict[str, Any], device: str
) -> tuple[Model, bool]:
    """The model file at ``path``: ``full`` metadata as it is, else ``given`` (the user's
    fields) over what the model tells."""
    suffix = path.suffix.lower()
    named = bool(given.get("name"))
    default = _default_name(path)
    if suffix == ".keras":
        from limner.models.keras import load_keras

        return load_keras(path, full, given=given, name=default), named
    if suffix == ".onnx":
        from limner.models.onnx import load_onnx

        return load_onnx(path, full, given, device=device, name=default), named
    if suffix in (".pt", ".pth", ".torchscript"):
        from limner.models.pytorch import load_torchscript

        return load_torchscript(path, full, device=device, given=given, name=default), named
    raise InvalidInputError(f"{path.name}: unknown model format {suffix!r}; give {SPECS_HELP}")


def _metadata_beside(path: Path) -> dict[str, Any]:
    """The fields of a ``NAME.json`` or ``limner-model.json`` beside the model file (none:
    an empty dict)."""
    for candidate in (path.with_suffix(".json"), path.parent / METADATA_FILE):
        if candidate.exists() and candidate.name != path.name:
            return read_metadata_dict(candidate)
    return {}


def _default_name(path: Path) -> str:
    """A model file's name when nothing names it: its stem, or its folder's for ``model.*``."""
    return path.stem if path.stem != "model" else (path.parent.name or path.stem)
