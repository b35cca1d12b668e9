"""What a tenant may deploy: one rule per model format, and the checks behind the rules.

An uploaded model is code unless its format says otherwise. A tenant (a key of the ``tenant``
role) may deploy only formats whose loading and running cannot reach beyond the model itself:

* ``onnx``: a graph of operators that ONNX Runtime implements; custom operator domains are
  refused (they would need a native library), and external data must lie inside the upload.
* ``keras``: Keras 3 ``.keras`` files loaded in safe mode (no Python lambdas); the configuration
  may name Keras' own classes only.
* weights-only formats whose code comes from an installed library (registered by their loaders
  with :func:`register_format`).

TorchScript, pickles (``.pt``, ``.pth``, ``.pkl``, ``.bin``, ...), HDF5 Keras files and anything
unknown carry code or can run it while loading: only an admin key may deploy them.

Loaders of new formats add a rule with :func:`register_format` (and, for a directory format, a
detector that names the format of a directory it would load).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from limner.errors import ForbiddenError, InvalidInputError
from limner.models.huggingface import check_directory as check_hf_directory
from limner.models.huggingface import config_dicts
from limner.models.huggingface import detect_format as detect_hf_directory
from limner.models.keras import KERAS_MEMBERS
from limner.models.keras import read_config as read_keras_config
from limner.models.loader import artifact_path
from limner.models.metadata import METADATA_FILE, read_metadata_dict

#: Operator domains ONNX Runtime implements itself: the ONNX standard and Microsoft's contrib
#: operators (which ONNX Runtime's own optimiser and quantiser write).
STANDARD_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})

#: Keras layers a tenant's model may not hold: Python code, TensorFlow SavedModels, and
#: lookup layers that read a vocabulary file named in the configuration.
KERAS_REFUSED_CLASSES = frozenset(
    {"Lambda", "TFSMLayer", "StringLookup", "IntegerLookup", "TextVectorization"}
)


@dataclass(frozen=True)
class FormatRule:
    """May a tenant deploy this format, why, and what is checked before it is loaded."""

    name: str
    tenant: bool
    reason: str
    check: Callable[[Path], None] | None = None


#: Rules by format name.
FORMATS: dict[str, FormatRule] = {}
#: File suffixes (lower case) by format name.
SUFFIXES: dict[str, str] = {}
#: Detectors of directory formats: given a directory, the format it holds (or ``None``).
DIRECTORY_DETECTORS: list[Callable[[Path], str | None]] = []


def register_format(
    rule: FormatRule,
    *,
    suffixes: tuple[str, ...] = (),
    detect: Callable[[Path], str | None] | None = None,
) -> None:
    """Add (or replace) the rule of a format.

    Args:
        rule: the format's name, whether tenants may deploy it, the reason, and a check run on
            the artifact (file or directory) before a tenant's model of that format is loaded.
        suffixes: file suffixes of the format (``.onnx``).
        detect: for directory formats: returns ``rule.name`` for a directory that the loader
            would load as that format (it must agree with the loader), else ``None``.
    """
    FORMATS[rule.name] = rule
    for suffix in suffixes:
        SUFFIXES[suffix.lower()] = rule.name
    if detect is not None:
        DIRECTORY_DETECTORS.append(detect)


def model_format(path: Path) -> tuple[str, Path]:
    """The format of the model at ``path`` (a file or a model directory) and the artifact the
    loader would open for it."""
    if path.is_dir():
        for detect in DIRECTORY_DETECTORS:
            found = detect(path)
            if found:
                return found, path
        if not (path / METADATA_FILE).is_file():
            raise InvalidInputError(f"the model directory holds no {METADATA_FILE}")
        artifact = artifact_path(path, read_metadata_dict(path / METADATA_FILE))
        return SUFFIXES.get(artifact.suffix.lower(), "unknown"), artifact
    return SUFFIXES.get(path.suffix.lower(), "unknown"), path


def tenant_formats() -> list[str]:
    """Names of the formats a tenant may deploy."""
    return [name for name, rule in FORMATS.items() if rule.tenant]


def check_tenant_model(path: Path) -> str:
    """Refuse, before anything is loaded, a model a tenant may not deploy; return its format.

    Raises:
        ForbiddenError: the format is admin-only, or the artifact breaks its format's rule.
        InvalidInputError: the artifact cannot be read.
    """
    fmt, artifact = model_format(path)
    rule = FORMATS.get(fmt)
    if rule is None or not rule.tenant:
        why = rule.reason if rule is not None else "it is not a format limner can check"
        raise ForbiddenError(
            f"a tenant key may not deploy this model ({fmt}): {why}; an admin key may. "
            f"Tenants deploy {', '.join(tenant_formats())} models"
        )
    if rule.check is not None:
        rule.check(artifact)
    return fmt


# ----------------------------------------------------------------------------- ONNX


def check_onnx(path: Path) -> None:
    """Standard operator domains only; external data only inside the model's folder."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidInputError("the upload is not a readable ONNX model") from exc
    local = {(f.domain, f.name) for f in model.functions}
    local_domains = {f.domain for f in model.functions}
    for opset in model.opset_import:
        if opset.domain not in STANDARD_ONNX_DOMAINS | local_domains:
            raise ForbiddenError(_custom_domain(opset.domain))
    for node in _onnx_nodes(model):
        if node.domain not in STANDARD_ONNX_DOMAINS and (node.domain, node.op_type) not in local:
            raise ForbiddenError(_custom_domain(node.domain))
    base = path.parent.resolve()
    for tensor in _onnx_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        rel = PurePosixPath(location.replace("\\", "/"))
        target = (base / rel).resolve()
        if (
            not location
            or rel.is_absolute()
            or ".." in rel.parts
            or not target.is_relative_to(base)
        ):
            raise ForbiddenError("the ONNX model's external data must lie inside the upload")


def _custom_domain(domain: str) -> str:
    return (
        f"the ONNX model uses operators of the custom domain {domain!r}; tenants may deploy "
        f"standard domains only ({', '.join(repr(d) for d in sorted(STANDARD_ONNX_DOMAINS))})"
    )


def _onnx_graphs(model: Any) -> Iterator[Any]:
    """The main graph, the local functions and every subgraph in them (If/Loop/Scan bodies)."""
    stack = [model.graph, *model.functions]
    while stack:
        graph = stack.pop()
        yield graph
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def _onnx_nodes(model: Any) -> Iterator[Any]:
    for graph in _onnx_graphs(model):
        yield from graph.node


def _onnx_tensors(model: Any) -> Iterator[Any]:
    for graph in _onnx_graphs(model):
        yield from getattr(graph, "initializer", ())
        for sparse in getattr(graph, "sparse_initializer", ()):
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


# ----------------------------------------------------------------------------- Keras


def check_keras(path: Path) -> None:
    """A ``.keras`` archive of the members Keras writes, whose configuration (at most
    :data:`~limner.models.keras.MAX_CONFIG_BYTES`) names only Keras' own classes and no code
    layers.

    Class names are read the way Keras looks them up: ``module`` + ``.`` + ``class_name``, so
    ``{"module": "keras", "class_name": "layers.Lambda"}`` is the ``Lambda`` layer; the last
    part of that name (and of a function's or a registered name) is compared, in any case,
    with :data:`KERAS_REFUSED_CLASSES`.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError("the upload is not a readable .keras file") from exc
    extra = sorted(set(names) - KERAS_MEMBERS)
    if extra or len(names) != len(set(names)):
        shown = ", ".join(repr(name) for name in extra[:3]) or "a member twice"
        raise ForbiddenError(
            f"the .keras file holds files Keras does not write for a model without lookup "
            f"layers ({shown}); Keras would extract them while loading"
        )
    config = read_keras_config(path)
    for item in config_dicts(config):
        if "class_name" not in item:
            continue
        module = str(item.get("module") or "keras")
        if module != "keras" and not module.startswith("keras."):
            raise ForbiddenError(f"the Keras model names a class outside Keras ({module!r})")
        for name in _keras_names(item):
            full = f"{module}.{name}"  # what Keras resolves: keras + layers.Lambda
            if full.startswith(_KERAS_UTILITIES):
                raise ForbiddenError(f"the Keras model names a Keras utility ({full!r})")
            short = name.replace(">", ".").rsplit(".", 1)[-1].strip("_").lower()
            if short in _KERAS_REFUSED:
                raise ForbiddenError(
                    f"the Keras model holds a {_KERAS_REFUSED[short]} layer ({name!r}), which "
                    "tenants may not deploy"
                )
        if ">" in str(item.get("registered_name") or ""):
            raise ForbiddenError("the Keras model needs custom (registered) objects")


#: Keras namespaces a configuration may not name: utilities (files, downloads) and saving.
_KERAS_UTILITIES = ("keras.utils", "keras.src.utils", "keras.saving", "keras.src.saving")
#: :data:`KERAS_REFUSED_CLASSES` by their lower-case names.
_KERAS_REFUSED = {name.lower(): name for name in KERAS_REFUSED_CLASSES}


def _keras_names(item: dict[str, Any]) -> list[str]:
    """The names by which Keras may look up the object of a configuration entry: its class
    name, its registered name and, for a function, the function's name."""
    names = [str(item["class_name"])]
    if item.get("registered_name"):
        names.append(str(item["registered_name"]))
    if item["class_name"] == "function" and isinstance(item.get("config"), str):
        names.append(item["config"])
    return names


# ----------------------------------------------------------------------------- the table

_CODE = "loading or running it can execute arbitrary code on the server"

register_format(
    FormatRule(
        "onnx",
        True,
        "a graph of standard operators run by ONNX Runtime, which reads no files and opens no "
        "sockets",
        check_onnx,
    ),
    suffixes=(".onnx",),
)
register_format(
    FormatRule(
        "keras",
        True,
        "Keras 3 in safe mode rebuilds the model from Keras' own layers; no Python is unpickled",
        check_keras,
    ),
    suffixes=(".keras",),
)
register_format(
    FormatRule(
        "huggingface",
        True,
        "config.json and safetensors weights: the network's code comes from the installed "
        "transformers; custom code (auto_map) and pickled weights are refused",
        check_hf_directory,
    ),
    detect=detect_hf_directory,
)
register_format(
    FormatRule("torchscript", False, f"TorchScript carries code ({_CODE}, e.g. torch.from_file)"),
    suffixes=(".pt", ".pth", ".torchscript", ".ptl"),
)
register_format(
    FormatRule("pickle", False, f"a pickle is a program ({_CODE})"),
    suffixes=(".pkl", ".pickle", ".bin", ".joblib", ".npy", ".npz", ".ckpt"),
)
register_format(
    FormatRule("keras-h5", False, f"legacy HDF5 Keras files may hold Python lambdas ({_CODE})"),
    suffixes=(".h5", ".hdf5"),
)
