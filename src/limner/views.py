"""Vertex-style views, and Vertex Explainable AI's explanation settings read as limner's.

``ViewSettings`` and ``render_view`` draw a view of any attribution map
(:mod:`limner.imaging.views`); ``Explanation.view(class_index, settings)`` draws one of an
explanation. :func:`from_vertex_metadata` reads a Vertex explanation-metadata file (the
``explanation_metadata`` of a model, with its ``explanation_parameters``) into the method, the
steps and the view limner uses for the same settings (docs/vertex.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limner.errors import InvalidInputError
from limner.imaging.views import FIELDS, ViewSettings, render_view

__all__ = [
    "VertexSettings",
    "ViewSettings",
    "from_vertex_metadata",
    "read_vertex_metadata",
    "render_view",
]

#: Vertex's attribution methods and the limner method that does the same.
VERTEX_METHODS = {
    "xrai_attribution": "xrai",
    "integrated_gradients_attribution": "integrated-gradients",
    "sampled_shapley_attribution": "kernelshap",
}


@dataclass(frozen=True)
class VertexSettings:
    """What a Vertex explanation-metadata file asks for, in limner's terms."""

    #: the limner method (None: the file names no attribution method)
    method: str | None
    #: integration steps (Vertex's ``step_count``), for ``xrai`` and ``integrated-gradients``
    steps: int | None
    #: the view of the file's ``visualization`` (fields it leaves out: the method's default)
    view: ViewSettings


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _get(data: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` in ``data``, read in snake_case or camelCase."""
    snake = {_snake(str(k)): v for k, v in data.items()}
    for name in names:
        if name in snake:
            return snake[name]
    return None


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a JSON object")
    return value


def from_vertex_metadata(data: Mapping[str, Any]) -> VertexSettings:
    """Read a Vertex explanation-metadata document: ``{"explanation_metadata": {"inputs":
    {NAME: {"visualization": {...}}}}, "explanation_parameters": {"xrai_attribution":
    {"step_count": 50}}}`` (also an ``ExplanationSpec``'s ``metadata``/``parameters``, a bare
    metadata object with ``inputs``, and camelCase names). Unspecified enum values
    (``*_UNSPECIFIED``) count as left out."""
    data = _object(data, "a Vertex explanation metadata file")
    metadata = _get(data, "explanation_metadata", "metadata")
    metadata = _object(metadata if metadata is not None else data, "explanation_metadata")
    parameters = _get(data, "explanation_parameters", "parameters")
    method = steps = None
    if parameters is not None:
        parameters = _object(parameters, "explanation_parameters")
        for key, value in parameters.items():
            name = _snake(str(key))
            if name in VERTEX_METHODS:
                method = VERTEX_METHODS[name]
                count = _get(_object(value or {}, name), "step_count")
                if count is not None and name != "sampled_shapley_attribution":
                    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                        raise InvalidInputError(f"{name}.step_count must be a positive integer")
                    steps = int(count)
            elif name.endswith("_attribution"):
                raise InvalidInputError(
                    f"Vertex's {name} has no limner counterpart; limner reads "
                    + ", ".join(VERTEX_METHODS)
                )
    inputs = _get(metadata, "inputs")
    visual: Mapping[str, Any] = {}
    if inputs is not None:
        for spec in _object(inputs, "explanation_metadata.inputs").values():
            found = _get(_object(spec, "an input's metadata"), "visualization")
            if found is not None:
                visual = _object(found, "visualization")
                break
    given = {
        _snake(str(k)): v
        for k, v in visual.items()
        if not (isinstance(v, str) and v.upper().endswith("_UNSPECIFIED"))
    }
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise InvalidInputError(
            f"unknown visualization setting {unknown[0][:60]!r}; Vertex's are " + ", ".join(FIELDS)
        )
    view = ViewSettings.from_dict(given, ViewSettings.default_for(method))
    return VertexSettings(method, steps, view)


def read_vertex_metadata(path: str | Path) -> VertexSettings:
    """:func:`from_vertex_metadata` of a JSON file (one line of error for a bad file)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{p}: not a JSON file ({exc})") from None
    return from_vertex_metadata(data)
