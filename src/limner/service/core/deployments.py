"""Deploying models: from a model spec the server can load, or from an uploaded artifact."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from limner.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    LimnerError,
    ModelError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
from limner.jobs.models import UPLOAD_PREFIX, is_url
from limner.models import METADATA_FILE, Model
from limner.models.detectors import BUILTIN_DETECTORS
from limner.models.huggingface import CONFIG as HF_CONFIG
from limner.models.huggingface import is_hf_directory
from limner.models.keras import CONFIG as KERAS_CONFIG
from limner.models.keras import MAX_CONFIG_BYTES as KERAS_MAX_CONFIG_BYTES
from limner.models.keras import check_config_size as check_keras_config_size
from limner.models.policy import model_format
from limner.models.remote_grpc import is_grpc_url
from limner.models.zoo import BUILTIN_MODELS
from limner.net import UrlPolicy
from limner.service.state import ServiceState
from limner.store import SpaceRef, new_id
from limner.store.blobs import release_blobs
from limner.store.lookup import list_in_space
from limner.store.private import private_dir, private_tree
from limner.store.tables import (
    Annotation,
    Deployment,
    ExplainerJob,
    Explanation,
    Subscription,
    Transaction,
    utcnow,
)

#: What a deployment may name as its model without a file: classifiers and detectors.
BUILTINS = BUILTIN_MODELS + BUILTIN_DETECTORS
#: Most members a model archive may hold.
MAX_ZIP_MEMBERS = 10_000
#: Bytes copied at a time while unpacking.
_CHUNK = 1024 * 1024


async def create_from_spec(
    state: ServiceState,
    space: SpaceRef,
    name: str,
    spec: str,
    *,
    hints: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Deployment:
    """Deploy the model ``spec``: a built-in name, an ``http(s)://`` Open Inference URL, or (an
    admin key only) a path under ``LIMNER_MODEL_ROOTS``.

    ``hints`` are the metadata fields the model or its server does not tell (labels, input
    settings, output kind); ``headers`` go with every request to a URL model and are stored,
    never shown back. The model is loaded in its worker and scores synthetic images there
    before it is accepted: a mismatch with its metadata is a 422 naming the field
    (:func:`limner.models.checks.verify_model`).
    """
    await run_in_threadpool(_check_free, state, space, name)
    spec = spec.strip()
    if is_grpc_url(spec):
        raise InvalidInputError(
            "the service calls models over HTTP: deploy the server's "
            "http(s)://host/v2/models/NAME URL (grpc:// URLs are for the CLI and the library)"
        )
    if headers and not is_url(spec):
        raise InvalidInputError("headers apply to URL models (http(s)://host/v2/models/NAME) only")
    if spec in BUILTINS:
        target = spec
    elif is_url(spec):
        (state.models.url_policy or UrlPolicy()).check(spec)
        target = spec
    else:
        target = str(_server_path(state, space, spec))

    # loaded and checked in its worker: it scores synthetic images before it is accepted
    load_spec = replace(
        state.models.spec(target, metadata=hints, headers=headers), name=name, verify=True
    )

    def load() -> tuple[Model, int]:
        return _load(lambda: state.models.start(load_spec)), 0

    model, size = await state.loads.run(load, discard=_close_first)
    digest = await run_in_threadpool(file_sha256, target)
    return await run_in_threadpool(
        _insert, state, space, new_id(), name, target, model, size, headers or None, digest
    )


def file_sha256(target: str) -> str | None:
    """The SHA-256 of a model that is a file on this server (``None`` for URLs, built-in names
    and folders)."""
    path = Path(target)
    if is_url(target) or target in BUILTINS or not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _server_path(state: ServiceState, space: SpaceRef, spec: str) -> Path:
    """A server path an admin key may deploy: under one of ``LIMNER_MODEL_ROOTS``.

    The refusals read the same whether the path exists or not.
    """
    if not space.is_admin:
        raise ForbiddenError(
            "a tenant key deploys built-in models "
            f"({', '.join(sorted(BUILTINS))}), uploads and http(s) URLs; server paths "
            "need an admin key"
        )
    roots = state.settings.resolved_model_roots()
    if not roots:
        raise ForbiddenError("server paths are off: the operator lists none in LIMNER_MODEL_ROOTS")
    path = Path(spec).expanduser()
    resolved = path.resolve() if path.is_absolute() else Path("/nonexistent")
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ForbiddenError("the path is not under a folder listed in LIMNER_MODEL_ROOTS")
    return resolved


async def create_from_upload(
    state: ServiceState,
    space: SpaceRef,
    name: str,
    filename: str,
    data: bytes,
    metadata: dict[str, Any] | None,
) -> Deployment:
    """Deploy an uploaded artifact: ``.onnx`` (+ metadata), a model directory or a Hugging Face
    image-classification directory (safetensors) as ``.zip``, or a ``.keras`` file. A tenant's
    upload must be of a format tenants may deploy (:mod:`limner.models.policy`); the space's
    storage quota bounds what it unpacks to. The metadata (any subset of ``limner-model.json``:
    labels and ``problem_type`` are enough for a model that tells its input) goes over what the
    model tells, and the model scores synthetic images in its worker before it is accepted (a
    mismatch is a 422 naming the field)."""
    await run_in_threadpool(_check_free, state, space, name)
    room = state.settings.space_quota_bytes - await run_in_threadpool(space_usage, state, space)
    dep_id = new_id()
    models_dir = state.settings.data_dir / "models"
    folder = models_dir / dep_id
    limits = _Limits(state.settings.max_unpacked_bytes, room)

    def unpack_check_load() -> tuple[Path, int, Model]:
        private_dir(folder)
        spec = _unpack(folder, filename, data, metadata, limits)
        private_tree(folder)
        size = _disk_size(folder)
        limits.check(size)
        # the tenant policy is checked in the worker too: reading an artifact is its work
        # loaded and checked in its worker: it scores synthetic images before it is accepted
        load_spec = replace(
            state.models.spec(str(spec), tenant=not space.is_admin, folder=folder),
            name=name,
            verify=True,
        )
        model = _load(lambda: state.models.start(load_spec))
        return spec, _counted(model, size, limits.room), model

    def discard(result: tuple[Path, int, Model] | None) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        if result is not None:
            result[2].close()

    try:
        spec, size, model = await state.loads.run(unpack_check_load, discard=discard)
        ref = UPLOAD_PREFIX + _upload_ref(folder, spec)
        digest = await run_in_threadpool(lambda: hashlib.sha256(data).hexdigest())
        return await run_in_threadpool(
            _insert, state, space, dep_id, name, ref, model, size, None, digest
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _upload_ref(folder: Path, spec: Path) -> str:
    """The uploaded artifact's path inside the deployment's folder (what ``model`` shows)."""
    if spec.is_dir():
        artifact = model_format(spec)[1]
        spec = artifact if artifact.is_file() else spec
    rel = spec.relative_to(folder).as_posix()
    return rel if rel != "." else "./"


def space_usage(state: ServiceState, space: SpaceRef | str) -> int:
    """Bytes the space (a ref or its id) takes against ``LIMNER_SPACE_QUOTA_BYTES``: its
    deployments (``deployments.size_bytes``) and its transactions' images
    (``spaces.image_bytes``: each transaction its image's bytes, shared blobs too)."""
    from limner.store.tables import Space

    space_id = space if isinstance(space, str) else space.id
    models = select(func.coalesce(func.sum(Deployment.size_bytes), 0)).where(
        Deployment.space_id == space_id
    )
    with state.db.session() as s:
        images = s.scalar(select(Space.image_bytes).where(Space.id == space_id))
        total = int(s.scalar(models) or 0) + int(images or 0)
    return total


@dataclass(frozen=True)
class _Limits:
    """What an upload may unpack to: the per-upload limit and the room left in the space."""

    max_unpacked: int
    room: int

    def check(self, size: int) -> None:
        if size > self.max_unpacked:
            raise PayloadTooLargeError(
                f"the upload unpacks to more than {self.max_unpacked} bytes "
                "(LIMNER_MAX_UNPACKED_BYTES)"
            )
        if size > self.room:
            raise PayloadTooLargeError(
                "the space's storage quota is full (LIMNER_SPACE_QUOTA_BYTES): remove a "
                "deployment first"
            )


def _unpack(
    folder: Path, filename: str, data: bytes, metadata: dict[str, Any] | None, limits: _Limits
) -> Path:
    suffix = Path(filename or "").suffix.lower()
    if suffix in (".onnx", ".keras"):
        limits.check(len(data))
    if suffix == ".onnx":
        if metadata is None:
            raise InvalidInputError(
                f"an .onnx upload needs its metadata: add a 'metadata' part ({METADATA_FILE})"
            )
        (folder / "model.onnx").write_bytes(data)
        _write_metadata(folder, metadata)
        return folder / "model.onnx"
    if suffix == ".zip":
        root = _unzip(folder, data, limits)
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
        _store_keras(io.BytesIO(data), path, limits, "the .keras file")
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


def _unzip(folder: Path, data: bytes, limits: _Limits) -> Path:
    """Unpack a model archive, counting the bytes actually written (declared sizes can lie).

    A ``.keras`` archive inside it is stored again uncompressed (:func:`_store_keras`), so that
    what Keras reads of it is counted too.
    """
    with _open_zip(io.BytesIO(data), "the upload", ".zip") as archive:
        infos = _sized_members(archive, folder, limits, "the .zip")
        written = 0
        with _unpacking("the .zip"):
            for info in infos:
                target = (folder / info.filename).resolve()
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, target.open("wb") as dst:
                    written = _copy(src, dst, written, limits)
    for nested in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".keras"):
        if nested.is_file() and zipfile.is_zipfile(nested):
            others = written - nested.stat().st_size
            stored = nested.with_name(nested.name + ".stored")
            written = others + _store_keras(nested, stored, limits, nested.name, others)
            stored.replace(nested)
    for marker in (METADATA_FILE, HF_CONFIG):  # the folder that holds the model
        if (folder / marker).exists():
            return folder
        found = sorted(p.parent for p in folder.rglob(marker) if "__MACOSX" not in p.parts)
        if found:
            return found[0]
    return folder


def _store_keras(
    source: Path | IO[bytes], target: Path, limits: _Limits, what: str, others: int = 0
) -> int:
    """Write the ``.keras`` archive ``source`` to ``target`` with every member stored
    (uncompressed), sized before anything reads it; return the bytes it unpacked to.

    A ``.keras`` is an archive: Keras reads its ``config.json`` whole and, for an archive of
    more than its own three members, extracts every member to a temporary folder while it
    loads. So its members are counted and sized here like a ``.zip``'s (declared sizes first,
    then the bytes actually unpacked, against ``limits`` with ``others`` bytes of the upload
    already on disk), its configuration is held to
    :data:`~limner.models.keras.MAX_CONFIG_BYTES`, and the file on disk is as large as what it
    unpacks to: what Keras reads or extracts is what was counted, and the space's quota counts
    the unpacked size, not the compressed upload.
    """
    with _open_zip(source, what, ".keras") as archive:
        infos = _sized_members(archive, target.parent, limits, what, others)
        check_keras_config_size(archive, what)
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"{what} holds a file twice")
        written = others
        try:
            with _unpacking(what), zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
                for info in infos:
                    if info.is_dir():
                        continue
                    member = zipfile.ZipInfo(info.filename)
                    member.file_size = info.file_size  # zipfile reads no more than declared
                    with archive.open(info) as src, out.open(member, "w") as dst:
                        written = _copy(src, dst, written, limits, _keras_cap(info, what))
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return written - others


def _open_zip(source: Path | IO[bytes], what: str, kind: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InvalidInputError(f"{what} is not a readable {kind} archive") from exc


def _sized_members(
    archive: zipfile.ZipFile, folder: Path, limits: _Limits, what: str, others: int = 0
) -> list[zipfile.ZipInfo]:
    """The archive's members, refused before any is read: too many (413), declaring more than
    ``limits`` allow with ``others`` bytes already written (413), compressed other than by
    deflate or not at all (422: bzip2 and LZMA members inflate without bound on each read), or
    named to land outside ``folder`` (422)."""
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise PayloadTooLargeError(f"{what} holds more than {MAX_ZIP_MEMBERS} files")
    limits.check(others + sum(info.file_size for info in infos))
    base = folder.resolve()
    for info in infos:
        if info.compress_type not in _ZIP_METHODS:
            raise InvalidInputError(
                f"{what} holds {info.filename!r} compressed by a method limner does not unpack "
                "(zip it with deflate, the default)"
            )
        if not (folder / info.filename).resolve().is_relative_to(base):
            raise InvalidInputError(f"{what} holds an unsafe path {info.filename!r}")
    return infos


#: Compression methods of the members limner unpacks (each read inflates a bounded amount).
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _keras_cap(info: zipfile.ZipInfo, what: str) -> Callable[[int], None] | None:
    """For a ``.keras``'s ``config.json``: refuses it (413) once it has unpacked to more than
    :data:`~limner.models.keras.MAX_CONFIG_BYTES`."""
    if info.filename != KERAS_CONFIG:
        return None

    def check(size: int) -> None:
        if size > KERAS_MAX_CONFIG_BYTES:
            raise PayloadTooLargeError(
                f"{what}: the Keras configuration ({KERAS_CONFIG}) is larger than "
                f"{KERAS_MAX_CONFIG_BYTES} bytes"
            )

    return check


def _copy(
    src: IO[bytes],
    dst: IO[bytes],
    written: int,
    limits: _Limits,
    member_check: Callable[[int], None] | None = None,
) -> int:
    """Copy one member, counting every byte against ``limits`` (and the member's own
    ``member_check`` of its size so far) before it is written; return the new count."""
    size = 0
    while chunk := src.read(_CHUNK):
        size += len(chunk)
        written += len(chunk)
        if member_check is not None:
            member_check(size)
        limits.check(written)
        dst.write(chunk)
    return written


@contextmanager
def _unpacking(what: str) -> Iterator[None]:
    """Errors of reading an archive's members as 422s that say what went wrong."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InvalidInputError(f"{what} is corrupt ({_zip_problem(exc)})") from exc
    except (NotImplementedError, RuntimeError) as exc:  # unknown compression, encrypted
        raise InvalidInputError(f"{what} cannot be unpacked ({exc})") from exc


def _zip_problem(exc: Exception) -> str:
    text = str(exc)
    return "a file's checksum does not match" if "CRC" in text else "cannot be read"


def _disk_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _load(load: Any) -> Model:
    try:
        return load()  # type: ignore[no-any-return]
    except LimnerError:
        raise
    except Exception as exc:  # an adapter's own error: the artifact is not a usable model
        raise ModelError(f"the model cannot be loaded: {exc}") from exc


def _close_first(result: tuple[Model, int] | None) -> None:
    if result is not None:
        result[0].close()


def _counted(model: Model, disk_bytes: int, room: int) -> int:
    """What a deployment counts against its space's quota: its unpacked files, parameters
    included (a ``.keras`` is stored uncompressed, so weights that compress to nothing count at
    their full size); refused (413) when that is over ``room``. What the model takes in memory
    beyond its files is bounded by its worker's limit (``LIMNER_WORKER_MEMORY_BYTES``)."""
    if disk_bytes > room:
        model.close()
        raise PayloadTooLargeError(
            "the space's storage quota is full (LIMNER_SPACE_QUOTA_BYTES): remove a "
            "deployment first"
        )
    return disk_bytes


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
    size_bytes: int,
    headers: dict[str, str] | None = None,
    artifact_sha256: str | None = None,
) -> Deployment:
    dep = Deployment(
        id=dep_id,
        space_id=space.id,
        name=name,
        model=spec,
        # a detector records its limner-model.json (its detection block included)
        model_metadata=getattr(model, "detection", None) or model.metadata.to_dict(),
        size_bytes=size_bytes,
        headers=headers,
        artifact_sha256=artifact_sha256,
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
    """The space's deployments (retired ones left out), oldest first."""
    return [d for d in list_in_space(state.db, Deployment, space.id) if d.retired_at is None]


def find_deployment(state: ServiceState, space: SpaceRef, name: str) -> Deployment:
    """The space's deployment called ``name`` (or with that id)."""
    with state.db.session() as s:
        dep = s.scalar(
            select(Deployment).where(
                Deployment.space_id == space.id,
                Deployment.retired_at.is_(None),
                or_(Deployment.name == name, Deployment.id == name),
            )
        )
    if dep is None:
        raise NotFoundError(f"no model {name!r}")
    return dep


def delete_deployment(state: ServiceState, dep: Deployment) -> None:
    """Remove a deployment with its subscription, transactions and explanations (see
    :func:`has_reviewed_history`: the route retires instead unless an admin purges)."""
    with state.db.session() as s:
        trained = s.execute(
            select(ExplainerJob.weights_blob, ExplainerJob.images_blob).where(
                ExplainerJob.deployment_id == dep.id
            )
        ).all()
        row = s.get(Deployment, dep.id)
        if row is not None:
            s.delete(row)
    _release_explainer_blobs(state, {key for pair in trained for key in pair if key})
    state.models.drop_deployment(dep.id)
    shutil.rmtree(state.settings.data_dir / "models" / dep.id, ignore_errors=True)


def _release_explainer_blobs(state: ServiceState, keys: set[str]) -> None:
    """Delete the blobs of deleted explainers (weights, an upload's images) that no remaining
    explainer references (two trainings may have made the same bytes)."""

    def referenced(batch: list[str]) -> set[str]:
        with state.db.session() as s:
            rows = s.execute(
                select(ExplainerJob.weights_blob, ExplainerJob.images_blob).where(
                    or_(ExplainerJob.weights_blob.in_(batch), ExplainerJob.images_blob.in_(batch))
                )
            )
            return {key for pair in rows for key in pair if key}

    release_blobs(state.blobs, keys, referenced)


def check_live(dep: Deployment) -> None:
    """Refuse (409) to score or explain with a retired deployment."""
    if dep.retired_at is not None:
        raise ConflictError(
            f"deployment {dep.name!r} is retired: it keeps its reviewed history but no longer "
            "scores or explains"
        )


def has_reviewed_history(state: ServiceState, dep: Deployment) -> bool:
    """Whether an explanation of the deployment (of its transactions, or made with its model)
    was exported or annotated: what a deletion keeps unless an admin purges it."""
    with state.db.session() as s:
        sub_id = s.scalar(select(Subscription.id).where(Subscription.deployment_id == dep.id))
        mine = [Explanation.deployment_id == dep.id]
        if sub_id is not None:
            tx_ids = select(Transaction.id).where(Transaction.subscription_id == sub_id)
            mine.append(Explanation.transaction_id.in_(tx_ids))
        annotated = select(Annotation.explanation_id).where(Annotation.space_id == dep.space_id)
        found = s.scalar(
            select(Explanation.id)
            .where(
                Explanation.space_id == dep.space_id,
                or_(*mine),
                or_(Explanation.exported_at.is_not(None), Explanation.id.in_(annotated)),
            )
            .limit(1)
        )
    return found is not None


def retire_deployment(state: ServiceState, dep: Deployment) -> Deployment:
    """Retire a deployment instead of deleting it: its transactions, explanations and
    annotations stay readable; its model is unloaded and its files deleted; its name is free
    again (the retired one reads ``NAME (retired ID)``)."""
    with state.db.session() as s:
        row = s.get(Deployment, dep.id)
        if row is None:
            raise NotFoundError(f"no deployment {dep.id!r}")
        if row.retired_at is None:
            row.retired_at = utcnow()
            row.name = f"{row.name[:170]} (retired {row.id[:8]})"
            row.size_bytes = 0
        s.flush()
        s.expunge(row)
    state.models.drop_deployment(dep.id)
    shutil.rmtree(state.settings.data_dir / "models" / dep.id, ignore_errors=True)
    return row
