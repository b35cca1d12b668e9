"""Model metadata: labels, input preprocessing and output kind (``limner-model.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from limner.errors import InvalidInputError

METADATA_FILE = "limner-model.json"

#: Largest model input accepted (width × height): far above any classifier, small enough that a
#: batch of perturbed inputs cannot exhaust memory because a metadata file said so.
MAX_INPUT_PIXELS = 4096 * 4096

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
        try:
            inp = dict(data["input"])
            labels = [str(x) for x in data["labels"]]
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"model metadata needs 'labels' and 'input' (missing {exc})"
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
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as exc:
            raise InvalidInputError(f"{p}: no such metadata file") from exc
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{p}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise InvalidInputError(f"{p}: expected a JSON object")
        return cls.from_dict(data)

    def write(self, path: str | Path) -> None:
        """Write this metadata as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


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


def _triple(value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    vals = tuple(float(v) for v in value)
    if len(vals) == 1:
        return vals * 3
    return vals
