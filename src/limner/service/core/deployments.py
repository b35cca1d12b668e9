"""Deploying models: from a model spec the server can load, or from an uploaded artifact."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from limner.errors import (
    ConflictError,
    InvalidInputError,
    LimnerError,
    ModelError,
    NotFoundError,
    UnsupportedMediaError,
)
from limner.models import METADATA_FILE, Model, load_model
from limner.models.huggingface import CONFIG as HF_CONFIG
from limner.models.huggingface import is_hf_directory
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.lookup import list_in_space
from limner.store.tables import Deployment

#: Largest total size of an unpacked model archive.
MAX_UNPACKED_BYTES = 2 * 1024**3


def create_from_spec(
    state: ServiceState,
    space: SpaceRef,
    name: str,
    spec: str,
    *,
    hints: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Deployment:
    """Deploy the model ``spec`` (built-in name, server-side path or Open Inference URL).

    ``hints`` are the metadata fields the model or its server does not tell (labels, input
    settings, output kind); ``headers`` go with every request to a URL model and are stored,
    never shown back.
    """
    _check_free(state, space, name)
    remote = spec.startswith(("http://", "https://"))
    if headers and not remote:
        raise InvalidInputError("headers apply to URL models (http(s)://host/v2/models/NAME) only")
    model = _load(
        lambda: load_model(spec, device=state.settings.device, metadata=hints, headers=headers)
    )
    return _insert(state, space, new_id(), name, spec, model, headers=headers or None)


def create_from_upload(
    state: ServiceState,
    space: SpaceRef,
    name: str,
    filename: str,
    data: bytes,
    metadata: dict[str, Any] | None,
) -> Deployment:
    """Deploy an uploaded artifact: ``.onnx`` (+ metadata), a model directory or a Hugging Face
    image-classification directory (safetensors) as ``.zip``, or a ``.keras`` file."""
    _check_free(state, space, name)
    dep_id = new_id()
    folder = state.settings.data_dir / "models" / dep_id
    folder.mkdir(parents=True, exist_ok=True)
    try:
        spec = _unpack(folder, filename, data, metadata)
        model = _load(lambda: load_model(str(spec), device=state.settings.device))
        return _insert(state, space, dep_id, name, str(spec.resolve()), model)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _unpack(folder: Path, filename: str, data: bytes, metadata: dict[str, Any] | None) -> Path:
    suffix = Path(filename or "").suffix.lower()
    if suffix == ".onnx":
        if metadata is None:
            raise InvalidInputError(
                f"an .onnx upload needs its metadata: add a 'metadata' part ({METADATA_FILE})"
            )
        (folder / "model.onnx").write_bytes(data)
        _write_metadata(folder, metadata)
        return folder
    if suffix == ".zip":
        root = _unzip(folder, data)
        if metadata is not None:
            _write_metadata(root, metadata)
        if not (root / METADATA_FILE).exists() and not is_hf_directory(root):
            raise InvalidInputError(
                f"the .zip holds no {METADATA_FILE} (a model directory) and no config.json with "
                "model.safetensors (a Hugging Face directory)"
            )
        return root
    if suffix == ".keras":
        path = folder / "model.keras"
        path.write_bytes(data)
        if metadata is not None:
            _write_metadata(folder, metadata)
        return path
    raise UnsupportedMediaError(
        f"cannot deploy {filename!r}: upload a .onnx file with metadata, a model directory "
        "as .zip, or a .keras file"
    )


def _write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    if not isinstance(metadata, dict):
        raise InvalidInputError("the metadata part must be a JSON object")
    (folder / METADATA_FILE).write_text(json.dumps(metadata))


def _unzip(folder: Path, data: bytes) -> Path:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InvalidInputError("the upload is not a readable .zip archive") from exc
    with archive:
        infos = archive.infolist()
        if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
            raise InvalidInputError("the .zip unpacks to more than 2 GB")
        base = folder.resolve()
        for info in infos:
            target = (folder / info.filename).resolve()
            if not target.is_relative_to(base):
                raise InvalidInputError(f"the .zip holds an unsafe path {info.filename!r}")
        archive.extractall(folder)
    for marker in (METADATA_FILE, HF_CONFIG):  # the folder that holds the model
        if (folder / marker).exists():
            return folder
        found = sorted(p.parent for p in folder.rglob(marker) if "__MACOSX" not in p.parts)
        if found:
            return found[0]
    return folder


def _load(load: Any) -> Model:
    try:
        return load()  # type: ignore[no-any-return]
    except LimnerError:
        raise
    except Exception as exc:  # an adapter's own error: the artifact is not a usable model
        raise ModelError(f"the model cannot be loaded: {exc}") from exc


def _check_free(state: ServiceState, space: SpaceRef, name: str) -> None:
    with state.db.session() as s:
        taken = s.scalar(
            select(Deployment.id).where(Deployment.space_id == space.id, Deployment.name == name)
        )
    if taken:
        raise ConflictError(f"a deployment named {name!r} exists already")


def _insert(
    state: ServiceState,
    space: SpaceRef,
    dep_id: str,
    name: str,
    spec: str,
    model: Model,
    *,
    headers: dict[str, str] | None = None,
) -> Deployment:
    dep = Deployment(
        id=dep_id,
        space_id=space.id,
        name=name,
        model=spec,
        model_metadata=model.metadata.to_dict(),
        headers=headers,
    )
    try:
        with state.db.session() as s:
            s.add(dep)
    except IntegrityError as exc:
        model.close()
        raise ConflictError(f"a deployment named {name!r} exists already") from exc
    state.models.registry.get(f"deployment:{dep_id}", lambda: model)
    return dep


def list_deployments(state: ServiceState, space: SpaceRef) -> list[Deployment]:
    """The space's deployments, oldest first."""
    return list_in_space(state.db, Deployment, space.id)


def find_deployment(state: ServiceState, space: SpaceRef, name: str) -> Deployment:
    """The space's deployment called ``name`` (or with that id)."""
    with state.db.session() as s:
        dep = s.scalar(
            select(Deployment).where(
                Deployment.space_id == space.id,
                or_(Deployment.name == name, Deployment.id == name),
            )
        )
    if dep is None:
        raise NotFoundError(f"no model {name!r}")
    return dep


def delete_deployment(state: ServiceState, dep: Deployment) -> None:
    """Remove a deployment with its subscription, transactions and explanations."""
    with state.db.session() as s:
        row = s.get(Deployment, dep.id)
        if row is not None:
            s.delete(row)
    state.models.drop_deployment(dep.id)
    shutil.rmtree(state.settings.data_dir / "models" / dep.id, ignore_errors=True)
