"""Model metadata: labels, input preprocessing and output kind (``limner-model.json``)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from limner.errors import InvalidInputError

METADATA_FILE = "limner-model.json"

#: Largest model input accepted (width × height): far above any classifier, small enough that a
#: batch of perturbed inputs cannot exhaust memory because a metadata file said so.
MAX_INPUT_PIXELS = 4096 * 4096

#: Most classes (labels) a model may have: above any classifier (ImageNet-21k has 21,841), small
#: enough that a remote's metadata cannot make a deployment's labels take hundreds of megabytes.
MAX_CLASSES = 100_000
#: Most characters of one label.
MAX_LABEL_CHARS = 1000

#: Element types a model's input tensor may have (numpy names). Others are refused: a metadata
#: file must not choose the tensor's memory (``S4000000``: 4 MB an element) or its kind
#: (``object``, records); ``bfloat16`` is no numpy type (a model casts inside, as PyTorch does).
INPUT_DTYPES = (
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float16",
    "float32",
    "float64",
)

Layout = Literal["NHWC", "NCHW"]
OutputKind = Literal["probabilities", "logits"]
ProblemType = Literal["binary", "multiclass"]


@dataclass(frozen=True)
class InputSpec:
    """How RGB uint8 pixels become the model's input tensor: ``(pixel * scale - mean) / std``."""

    width: int
    height: int
    channels: int = 3
    layout: Layout = "NCHW"
    dtype: str = "float32"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", input_dtype(self.dtype))

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Turn uint8 ``(N, H, W, 3)`` at this size into the model's input tensor."""
        if self.dtype == "uint8" and self.scale == 1.0 and not any(self.mean):
            x: np.ndarray = images
        else:
            mean = np.asarray(self.mean, dtype=np.float32)
            inv_std = 1.0 / np.asarray(self.std, dtype=np.float32)
            x = (images.astype(np.float32) * np.float32(self.scale) - mean) * inv_std
        if self.channels == 1:
            x = x.mean(axis=3, keepdims=True)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x.astype(self.dtype, copy=False))


@dataclass(frozen=True)
class ModelMetadata:
    """Everything limner needs to know about a classifier besides its weights."""

    labels: list[str]
    input: InputSpec
    output: OutputKind = "probabilities"
    problem_type: ProblemType = "multiclass"
    name: str = "model"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.labels) < 1:
            raise InvalidInputError("model metadata: 'labels' must list at least one class")
        if len(self.labels) > MAX_CLASSES:
            raise InvalidInputError(_too_many_labels(len(self.labels)))
        if any(len(label) > MAX_LABEL_CHARS for label in self.labels):
            raise InvalidInputError(f"model metadata: a label is over {MAX_LABEL_CHARS} characters")
        if len(set(self.labels)) != len(self.labels):
            raise InvalidInputError("model metadata: 'labels' must be unique")
        if self.problem_type not in ("binary", "multiclass"):
            raise InvalidInputError("model metadata: 'problem_type' must be binary or multiclass")
        if self.problem_type == "binary" and len(self.labels) != 2:
            raise InvalidInputError("model metadata: a binary model needs exactly two labels")
        if self.output not in ("probabilities", "logits"):
            raise InvalidInputError("model metadata: 'output' must be probabilities or logits")
        if self.input.layout not in ("NHWC", "NCHW"):
            raise InvalidInputError("model metadata: input 'layout' must be NHWC or NCHW")
        if self.input.width < 1 or self.input.height < 1:
            raise InvalidInputError("model metadata: input width and height must be positive")
        if self.input.width * self.input.height > MAX_INPUT_PIXELS:
            raise InvalidInputError(
                f"model metadata: an input of {self.input.width}×{self.input.height} is over "
                f"{MAX_INPUT_PIXELS} pixels; a classifier's input is far smaller"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``limner-model.json``."""
        d = asdict(self)
        d["input"]["mean"] = list(self.input.mean)
        d["input"]["std"] = list(self.input.std)
        extra = d.pop("extra")
        d.update(extra)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Read metadata from its JSON form, with clear errors for missing fields."""
        missing = missing_fields(data)
        if missing:
            raise InvalidInputError(
                f"model metadata: missing {join_fields(missing)}; give them in {METADATA_FILE}"
            )
        try:
            inp = dict(data["input"])
            if len(data["labels"]) > MAX_CLASSES:  # before a string is made of each
                raise InvalidInputError(_too_many_labels(len(data["labels"])))
            labels = [str(x) for x in data["labels"]]
        except InvalidInputError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                "model metadata: 'labels' must be a list and 'input' an object"
            ) from exc
        try:
            channels = int(inp.get("channels", 3))
            spec = InputSpec(
                width=int(inp["width"]),
                height=int(inp["height"]),
                channels=channels,
                layout=inp.get("layout", "NCHW"),
                dtype=str(inp.get("dtype", "float32")),
                scale=float(inp.get("scale", 1.0 / 255.0)),
                mean=_triple(inp.get("mean", 0.0)),
                std=_triple(inp.get("std", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"model metadata: bad 'input' block ({exc})") from exc
        known = {"labels", "input", "output", "problem_type", "name"}
        return cls(
            labels=labels,
            input=spec,
            output=data.get("output", "probabilities"),
            problem_type=data.get("problem_type", "binary" if len(labels) == 2 else "multiclass"),
            name=str(data.get("name", "model")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def read(cls, path: str | Path) -> ModelMetadata:
        """Read a ``limner-model.json`` file."""
        return cls.from_dict(read_metadata_dict(path))

    def write(self, path: str | Path) -> None:
        """Write this metadata as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def read_metadata_dict(path: str | Path) -> dict[str, Any]:
    """The JSON object of a ``limner-model.json`` file, any subset of its fields (the model
    may tell the rest: see :func:`complete`)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{p.name}: no such metadata file") from exc
    except (OSError, ValueError) as exc:
        problem = without_folder(str(exc), p.parent)
        raise InvalidInputError(f"{p.name}: not valid JSON ({problem})") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{p.name}: expected a JSON object")
    return data


def missing_fields(data: dict[str, Any]) -> list[str]:
    """The fields a model's metadata must have that ``data`` lacks (``labels``,
    ``input.width``, ``input.height``)."""
    missing = [] if data.get("labels") is not None else ["labels"]
    inp = data.get("input")
    inp = inp if isinstance(inp, dict) else {}
    missing += [f"input.{key}" for key in ("width", "height") if inp.get(key) in (None, "")]
    return missing


def join_fields(fields: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return fields[0] if len(fields) == 1 else ", ".join(fields[:-1]) + " and " + fields[-1]


@dataclass(frozen=True)
class Signature:
    """What a model itself says of its input and output tensors (None: it does not say).

    Adapters read it off the model (an ONNX graph's fixed dimensions, a Keras model's input
    shape, a server's published tensors); it fills the gaps of the metadata
    (:meth:`hints`) and is checked against what the user gave (:meth:`mismatches`).
    """

    width: int | None = None
    height: int | None = None
    channels: int | None = None
    layout: Layout | None = None
    dtype: str | None = None
    #: Scores per image of the model's (first) output.
    outputs: int | None = None
    #: The input tensor's shape as the model declares it (for messages), e.g. ``(N, 3, 96, 96)``.
    shape: str | None = None

    def hints(self) -> dict[str, Any]:
        """The metadata fields this signature gives (an ``input`` block)."""
        inp = {
            key: value
            for key, value in (
                ("width", self.width),
                ("height", self.height),
                ("channels", self.channels),
                ("layout", self.layout),
                ("dtype", self.dtype),
            )
            if value is not None
        }
        return {"input": inp} if inp else {}

    def mismatches(self, meta: ModelMetadata) -> list[str]:
        """What in ``meta`` the model cannot take, each naming the field and what the model
        has (``input.width: the model's input is fixed at 96×96, not 50``)."""
        inp = meta.input
        found = []
        shape = f" {self.shape}" if self.shape else ""
        if self.layout is not None and inp.layout != self.layout:
            found.append(
                f"input.layout: the model's input is {self.layout}{shape}, not {inp.layout}"
            )
        size = (
            f"{self.width}×{self.height}"
            if self.width and self.height
            else f"{self.width or '?'} wide and {self.height or '?'} high"
        )
        for key, fixed, given in (
            ("width", self.width, inp.width),
            ("height", self.height, inp.height),
        ):
            if fixed is not None and fixed != given:
                found.append(f"input.{key}: the model's input is fixed at {size}, not {given}")
        if self.channels is not None and self.channels != inp.channels:
            found.append(
                f"input.channels: the model takes {self.channels} channel"
                f"{'s' if self.channels != 1 else ''}{shape}, not {inp.channels}"
            )
        if self.dtype is not None and self.dtype != inp.dtype:
            found.append(f"input.dtype: the model takes {self.dtype} input, not {inp.dtype}")
        if self.outputs is not None:
            found.extend(output_count_problem(self.outputs, len(meta.labels)))
        return found


def output_count_problem(outputs: int, labels: int) -> list[str]:
    """The ``labels`` problem of a model with ``outputs`` scores an image (a single sigmoid
    output serves two labels), or none."""
    if outputs == labels or (outputs == 1 and labels == 2):
        return []
    return [
        f"labels: the model has {outputs} output{'s' if outputs != 1 else ''} but {labels} "
        f"label{'s' if labels != 1 else ''} were given"
    ]


def complete(
    data: dict[str, Any], *, what: str, signature: Signature | None = None
) -> ModelMetadata:
    """``data`` (what the model tells, the user's fields over it) as metadata; what is still
    missing is named in one message (with what the model says of it)."""
    missing = missing_fields(data)
    if missing:
        told = []
        if "labels" in missing and signature is not None and signature.outputs:
            n = signature.outputs
            told.append(f"the model has {n} output{'s' if n != 1 else ''}")
        if any(m.startswith("input.") for m in missing) and signature and signature.shape:
            told.append(f"its input is {signature.shape}")
        said = f" ({'; '.join(told)})" if told else ""
        raise InvalidInputError(
            f"{what}: missing {join_fields(missing)}{said}: the model does not tell "
            f"{'it' if len(missing) == 1 else 'them'}; give {'it' if len(missing) == 1 else 'them'}"
            f" in {METADATA_FILE} (or the deployment's metadata)"
        )
    return ModelMetadata.from_dict(data)


#: Terminal escape sequences (colours, cursor moves, hyperlinks) that libraries put in their
#: messages: CSI ``ESC [ ... final``, OSC ``ESC ] ... BEL|ESC \`` and two-character escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
#: Other control characters (a lone ESC, carriage returns, NUL...), tabs and newlines aside.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def plain_text(text: str, limit: int | None = None) -> str:
    """``text`` as one plain line: terminal escape codes and control characters removed,
    whitespace runs (newlines too) made one space, at most ``limit`` characters (None: all)."""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    text = " ".join(text.split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def merge_hints(base: dict[str, Any], hints: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` (a ``limner-model.json`` form, maybe partial) with the user's ``hints`` over it.

    Hints are the same fields, any subset: ``labels``, ``input`` (``width``, ``height``,
    ``layout``, ``dtype``, ``scale``, ``mean``, ``std``, ...; merged key by key), ``output``,
    ``problem_type``, ``name`` and extras such as ``input_name``.
    """
    out = dict(base)
    for key, value in (hints or {}).items():
        if value is None:
            continue
        if key == "input":
            if not isinstance(value, dict):
                raise InvalidInputError("model metadata: 'input' must be an object")
            out["input"] = {**(out.get("input") or {}), **value}
        else:
            out[key] = value
    if "labels" in (hints or {}) and "problem_type" not in (hints or {}):
        out.pop("problem_type", None)  # follows the labels given
    return out


def with_hints(metadata: ModelMetadata, hints: dict[str, Any] | None) -> ModelMetadata:
    """``metadata`` with the user's hints (see :func:`merge_hints`) applied."""
    if not hints:
        return metadata
    return ModelMetadata.from_dict(merge_hints(metadata.to_dict(), hints))


def input_dtype(value: Any) -> str:
    """``value`` as one of :data:`INPUT_DTYPES` (numpy's aliases, such as ``f4`` or ``<f4`` on
    a little-endian machine, read as their names); :class:`InvalidInputError` for any other."""
    text = str(value)
    if text in INPUT_DTYPES:
        return text
    name = None
    if len(text) <= 16:  # aliases are short: a longer text is refused without parsing it
        try:
            dtype = np.dtype(text)
        except (TypeError, ValueError, SyntaxError):
            dtype = None
        if dtype is not None and dtype.isnative and dtype.name in INPUT_DTYPES:
            name = dtype.name
    if name is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidInputError(
            f"input 'dtype' {shown!r} is not allowed; use one of {', '.join(INPUT_DTYPES)}"
        )
    return name


def without_folder(message: str, folder: str | Path) -> str:
    """``message`` with the paths under ``folder`` made relative to it (``model.onnx``, not
    ``/srv/limner-data/models/<id>/model.onnx``): what an error may show a tenant of the files
    of its upload. Relative folders (a CLI user's own paths) are left as they are."""
    given = Path(folder)
    if not given.is_absolute():
        return message
    prefixes = {str(given), str(given.resolve())} - {"/"}
    for prefix in sorted(prefixes, key=len, reverse=True):
        message = message.replace(prefix.rstrip("/") + "/", "").replace(prefix, ".")
    return message


def _too_many_labels(count: int) -> str:
    return f"model metadata: {count} labels; a model may have at most {MAX_CLASSES} classes"


def _triple(value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    vals = tuple(float(v) for v in value)
    if len(vals) == 1:
        return vals * 3
    return vals
