"""What an Open Inference server tells about a model, and the metadata limner makes of it.

Servers publish anywhere from everything (limner's own ``parameters.limner_model``) to nothing
(a KServe ``ModelServer`` answers ``{"name", "versions": null, "platform": "", "inputs": [],
"outputs": []}``). Whatever is missing the user supplies as hints: the fields of a
``limner-model.json``, any subset (see :func:`limner.models.metadata.merge_hints`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limner.errors import InvalidInputError, ModelError
from limner.models.metadata import MAX_CLASSES, Layout, ModelMetadata, Signature, merge_hints

#: Input settings of raw pixels: uint8 NHWC as decoded (what limner's own server takes).
RAW_PIXELS: dict[str, Any] = {
    "layout": "NHWC",
    "dtype": "uint8",
    "scale": 1.0,
    "mean": 0.0,
    "std": 1.0,
}

#: Open Inference datatype → the ``dtype`` of limner's input settings.
_DTYPES = {"UINT8": "uint8", "FP32": "float32", "FP16": "float16", "FP64": "float64"}


@dataclass(frozen=True)
class ServerDescription:
    """The parts of a ``GET /v2/models/NAME`` answer limner uses (each may be missing)."""

    name: str | None = None
    limner_model: dict[str, Any] | None = None
    input_name: str | None = None
    input_shape: list[int] | None = None
    input_datatype: str | None = None
    output_name: str | None = None
    output_count: int | None = None


def describe(body: Any, url: str) -> ServerDescription:
    """Read a model-metadata answer leniently: ``null`` or empty lists are fine."""
    if not isinstance(body, dict) or not any(k in body for k in ("name", "inputs", "outputs")):
        raise ModelError(f"{url}: not an Open Inference model endpoint")
    inputs = [t for t in body.get("inputs") or [] if isinstance(t, dict)]
    outputs = [t for t in body.get("outputs") or [] if isinstance(t, dict)]
    params = body.get("parameters")
    params = params if isinstance(params, dict) else {}
    first_in = inputs[0] if inputs else {}
    numeric = [t for t in outputs if t.get("datatype") != "BYTES"]
    out = next((t for t in numeric if t.get("name") == "probability"), None) or (
        numeric[0] if numeric else {}
    )
    out_shape = _shape(out.get("shape"))
    count = out_shape[-1] if out_shape and len(out_shape) >= 2 and out_shape[-1] > 0 else None
    limner_model = params.get("limner_model")
    return ServerDescription(
        name=str(body["name"]) if body.get("name") else None,
        limner_model=limner_model if isinstance(limner_model, dict) else None,
        input_name=str(first_in["name"]) if first_in.get("name") else None,
        input_shape=_shape(first_in.get("shape")),
        input_datatype=str(first_in.get("datatype") or "") or None,
        output_name=str(out["name"]) if out.get("name") else None,
        output_count=count,
    )


def _shape(value: Any) -> list[int] | None:
    if not isinstance(value, list):
        return None
    try:
        return [int(d) for d in value]
    except (TypeError, ValueError):
        return None


def _from_tensors(desc: ServerDescription) -> dict[str, Any]:
    """Input settings read off the published input tensor (layout, size, dtype)."""
    inp: dict[str, Any] = {}
    shape = desc.input_shape
    if shape and len(shape) == 4:
        nchw = shape[1] in (1, 3) and shape[3] not in (1, 3)
        h, w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
        inp["layout"] = "NCHW" if nchw else "NHWC"
        if h > 0 and w > 0:
            inp["width"], inp["height"] = w, h
    dtype = _DTYPES.get(desc.input_datatype or "")
    if dtype == "uint8":
        inp.update(RAW_PIXELS, layout=inp.get("layout", "NHWC"))
    elif dtype:
        inp["dtype"] = dtype
    return {"input": inp} if inp else {}


def published_signature(desc: ServerDescription | None) -> Signature:
    """What a server's published tensors fix: the input's size, layout and channels where its
    shape tells them unambiguously, its element type, and the output's score count."""
    if desc is None:
        return Signature()
    shape = desc.input_shape
    width = height = channels = None
    layout: Layout | None = None
    if shape and len(shape) == 4:
        first, last = shape[1], shape[3]
        if first in (1, 3) and last not in (1, 3):
            layout, channels, height, width = "NCHW", first, shape[2], shape[3]
        elif last in (1, 3) and first not in (1, 3):
            layout, channels, height, width = "NHWC", last, shape[1], shape[2]
    shown = "(" + ", ".join(str(d) if d > 0 else "N" for d in shape) + ")" if shape else None
    return Signature(
        width=width if width and width > 0 else None,
        height=height if height and height > 0 else None,
        channels=channels,
        layout=layout,
        dtype=_DTYPES.get(desc.input_datatype or ""),
        outputs=desc.output_count,
        shape=shown,
    )


#: Input settings a server publishes as numbers (``mean`` and ``std``: a number or a list).
_NUMERIC_INPUT = ("width", "height", "channels", "scale", "mean", "std")


def _published_input(meta: dict[str, Any], url: str) -> dict[str, Any]:
    """The ``input`` block a server publishes, its numbers checked here: the metadata's own
    check would quote the value it refused, and an error must not show what a server sent."""
    inp = meta.get("input") or {}
    if not isinstance(inp, dict):
        raise ModelError(f"{url}: the server publishes an 'input' that is not an object")
    for key in _NUMERIC_INPUT:
        value = inp.get(key)
        values = value if isinstance(value, list) and key in ("mean", "std") else [value]
        if value is not None and not all(_is_number(v) for v in values):
            raise ModelError(f"{url}: the server publishes an input {key!r} that is not a number")
    return dict(inp)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _limner_served(meta: dict[str, Any], url: str) -> dict[str, Any]:
    """limner's own server preprocesses itself: send it raw pixels, read probabilities."""
    data = dict(meta)
    data["input"] = {**_published_input(meta, url), **RAW_PIXELS}
    data["output"] = "probabilities"
    data["input_name"] = "image"
    data["output_name"] = "probability"
    return data


def resolve_metadata(
    desc: ServerDescription,
    hints: dict[str, Any] | None,
    url: str,
    count_outputs: Callable[[dict[str, Any]], int],
) -> ModelMetadata:
    """The metadata of a remote model: what the server publishes, the user's hints over it.

    Without an input size from either, this fails with a message that says how to give one;
    without labels, they are ``class_0, class_1, ...`` for the published output size, or for
    the size of one answer to a black image (``count_outputs(input_settings)``).
    """
    base = _limner_served(desc.limner_model, url) if desc.limner_model else _from_tensors(desc)
    data = merge_hints(base, hints)
    inp = dict(data.get("input") or {})
    if not inp.get("width") or not inp.get("height"):
        raise InvalidInputError(
            f"{url}: the server does not publish the model's input size; give it "
            "(--input-size 224, or input width and height in the metadata)"
        )
    if "dtype" not in inp:
        inp = {**RAW_PIXELS, **inp}
    data["input"] = inp
    if desc.input_name and "input_name" not in data:
        data["input_name"] = desc.input_name
    if desc.output_name and "output_name" not in data:
        data["output_name"] = desc.output_name
    if not data.get("labels"):
        n = desc.output_count or count_outputs(inp)
        if n > MAX_CLASSES:  # before making a label for each
            raise ModelError(
                f"{url}: the model answers {n} scores an image; a model may have at most "
                f"{MAX_CLASSES} classes"
            )
        data["labels"] = [f"class_{i}" for i in range(max(n, 2))]
    if data.get("name", "model") == "model":
        data["name"] = desc.name or url.rstrip("/").rsplit("/", 1)[-1] or "model"
    return ModelMetadata.from_dict(data)
