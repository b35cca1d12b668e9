"""The CLI's shared options: metadata a model or its server does not give, HTTP headers, and
the settings of a region explanation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from limner.errors import InvalidInputError

#: The options that describe a model to commands that take one (``explain``,
#: ``kserve-explainer``): each fills a field of ``limner-model.json`` the model does not give.
MetadataOption = Annotated[
    Path | None,
    typer.Option(help="limner-model.json for the model (all of it, or the fields missing)."),
]
LabelsOption = Annotated[
    Path | None, typer.Option(help="Class labels: a file with one per line, or a JSON list.")
]
InputSizeOption = Annotated[
    str | None, typer.Option("--input-size", help="The model's input size: N or WxH.")
]
LayoutOption = Annotated[str | None, typer.Option(help="Input layout: NHWC | NCHW.")]
ScaleOption = Annotated[
    float | None, typer.Option(help="Pixel scale (pixel * scale - mean) / std.")
]
MeanOption = Annotated[str | None, typer.Option(help="Per-channel mean, e.g. 0.485,0.456,0.406.")]
StdOption = Annotated[str | None, typer.Option(help="Per-channel std, e.g. 0.229,0.224,0.225.")]
OutputOption = Annotated[
    str | None, typer.Option(help="What the model answers: probabilities | logits.")
]

#: The settings of a region explanation, shared by ``explain`` and ``explain-box``.
SamplesOption = Annotated[
    int | None, typer.Option(help="A fixed budget of model evaluations for the estimate.")
]
SegmentationOption = Annotated[str, typer.Option(help="slic | quickshift | felzenszwalb | grid")]
SegmentsOption = Annotated[int | None, typer.Option(help="Number of regions.")]
BaselineOption = Annotated[str, typer.Option(help="mean | blur | gray | black")]
SeedOption = Annotated[int, typer.Option(help="Sampling seed.")]
StepsOption = Annotated[
    int | None,
    typer.Option(help="integrated-gradients, xrai: integration steps (default: until complete)."),
]
LayerOption = Annotated[
    str | None,
    typer.Option(help="gradcam: the layer to read (default: the last spatial feature map)."),
]


def read_labels(path: Path) -> list[str]:
    """Labels from a file: one per line, or a JSON list."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInputError(f"--labels {path}: cannot read it ({exc.strerror})") from exc
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"--labels {path}: not a valid JSON list ({exc})") from exc
        if not isinstance(data, list):
            raise InvalidInputError(f"--labels {path}: expected a JSON list of names")
        return [str(x) for x in data]
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise InvalidInputError(f"--labels {path}: the file lists no labels")
    return labels


def parse_size(text: str) -> tuple[int, int]:
    """``224`` → (224, 224); ``320x240`` → (320, 240) as width × height."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError as exc:
        raise InvalidInputError(f"--input-size must be N or WxH, not {text!r}") from exc
    if len(values) not in (1, 2) or min(values) < 1:
        raise InvalidInputError(f"--input-size must be N or WxH, not {text!r}")
    return (values[0], values[-1])


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise InvalidInputError(
            f"{option} takes numbers separated by commas, not {text!r}"
        ) from exc


def model_hints(
    *,
    metadata: Path | None = None,
    labels: Path | None = None,
    input_size: str | None = None,
    layout: str | None = None,
    scale: float | None = None,
    mean: str | None = None,
    std: str | None = None,
    output: str | None = None,
) -> dict[str, Any] | None:
    """The model metadata the user gave on the command line (``None`` when none)."""
    hints: dict[str, Any] = {}
    if metadata is not None:
        try:
            data = json.loads(metadata.read_text())
        except OSError as exc:
            raise InvalidInputError(
                f"--metadata {metadata}: cannot read it ({exc.strerror})"
            ) from exc
        except ValueError as exc:
            raise InvalidInputError(f"--metadata {metadata}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise InvalidInputError(f"--metadata {metadata}: expected a JSON object")
        hints.update(data)
    inp: dict[str, Any] = dict(hints.get("input") or {})
    if labels is not None:
        hints["labels"] = read_labels(labels)
    if input_size is not None:
        inp["width"], inp["height"] = parse_size(input_size)
    if layout is not None:
        inp["layout"] = layout.upper()
    if scale is not None:
        inp["scale"] = scale
        inp.setdefault("dtype", "float32")
    if mean is not None:
        inp["mean"] = _floats(mean, "--mean")
        inp.setdefault("dtype", "float32")
    if std is not None:
        inp["std"] = _floats(std, "--std")
        inp.setdefault("dtype", "float32")
    if output is not None:
        if output not in ("probabilities", "logits"):
            raise InvalidInputError(f"--output must be probabilities or logits, not {output!r}")
        hints["output"] = output
    if inp:
        hints["input"] = inp
    return hints or None


def parse_headers(values: list[str] | None) -> dict[str, str]:
    """``['Authorization: Bearer x']`` → ``{'Authorization': 'Bearer x'}``."""
    headers: dict[str, str] = {}
    for value in values or []:
        name, sep, content = value.partition(":")
        if not sep or not name.strip() or any(c in value for c in "\r\n"):
            raise InvalidInputError(f"--header must look like 'Name: value', not {value!r}")
        headers[name.strip()] = content.strip()
    return headers


def with_limner_key(url: str, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus ``Authorization: Bearer $LIMNER_API_KEY`` when ``url`` is a limner
    server that asks for a key and none is given.

    The key goes only to a server that answers 401 for the URL and limner's own 401
    (``{"error": {"code": "unauthorized"}}``) for its ``/v1/deployments``, never elsewhere.
    """
    key = os.environ.get("LIMNER_API_KEY")
    if not key or any(k.lower() == "authorization" for k in headers) or "/v2/" not in url:
        return headers
    root = url.split("/v2/", 1)[0]
    try:
        if httpx.get(url, headers=headers, timeout=30.0).status_code != 401:
            return headers
        resp = httpx.get(f"{root}/v1/deployments", headers=headers, timeout=30.0)
        error = resp.json().get("error") if resp.status_code == 401 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return headers
    if isinstance(error, dict) and error.get("code") == "unauthorized":
        return {**headers, "Authorization": f"Bearer {key}"}
    return headers
