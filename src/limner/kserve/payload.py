"""Reading a KServe v1 ``:explain`` body: the images of its ``instances`` and the explanation
settings of its ``parameters``.

Each instance is one image, in one of the forms KServe's v1 image examples use:

* a base64 string (standard or URL-safe alphabet; a ``data:image/...;base64,`` URL too);
* an object holding one: ``{"b64": ...}``, ``{"image_bytes": {"b64": ...}}`` (TensorFlow
  Serving's form), ``{"data": ...}`` (TorchServe's), ``{"image": ...}`` or ``{"bytes": ...}``,
  each either the string or ``{"b64": ...}``; other keys of the object (a ``key``) are ignored;
* pixels as nested arrays, ``[H][W][3]`` (RGB) or ``[H][W]`` (gray), values 0–255.

Nothing in a request chooses where limner connects: an instance or parameter that names a URL
or a predictor is refused unless it names the configured predictor.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from limner.errors import BadRequestError, ForbiddenError, PayloadTooLargeError
from limner.explain import BASELINES, METHODS, SEGMENTATIONS
from limner.imaging import decode_image
from limner.kserve.config import ExplainerConfig

#: Keys of an instance object that hold the image.
IMAGE_KEYS = ("image_bytes", "b64", "data", "image", "bytes")
#: Keys that would name somewhere to connect to: a request never chooses that.
LOCATION_KEYS = (
    "predictor_host",
    "predictor_url",
    "predictor",
    "url",
    "uri",
    "image_url",
    "model_url",
    "host",
)
#: Methods a remote (black-box) predictor can be explained with.
BLACK_BOX_METHODS = tuple(m for m in METHODS if m in ("kernelshap", "lime", "occlusion", "rise"))
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/=_-]*$")


class ExplainParameters(BaseModel):
    """The ``parameters`` a request may give; everything else is the operator's."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["kernelshap", "lime", "occlusion", "rise"] | None = None
    samples: int | None = Field(default=None, ge=8)
    max_samples: int | None = Field(default=None, ge=8)
    segmentation: str | None = None
    segments: int | None = Field(default=None, ge=2)
    baseline: str | None = None
    classes: list[str | int] | None = Field(default=None, min_length=1, max_length=20)
    top_k: int | None = Field(default=None, ge=1, le=20)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    confidence: float | None = Field(default=None, ge=0.5, lt=1.0)


@dataclass(frozen=True)
class ExplainRequest:
    """A parsed ``:explain`` body: decoded RGB images and the ``limner.explain`` settings."""

    images: list[np.ndarray]
    settings: dict[str, Any]


def parse_body(body: bytes, config: ExplainerConfig) -> ExplainRequest:
    """The images and settings of a v1 ``:explain`` body.

    Raises:
        BadRequestError: not JSON, no ``instances``, an instance that is not an image in a
            known form, parameters out of range (KServe answers its ``InvalidInput`` with 400).
        ForbiddenError: a request that names a predictor or URL other than the configured one.
        PayloadTooLargeError: more instances or pixels than the operator allows.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"Unrecognized request format: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequestError('the body must be a JSON object: {"instances": [...]}')
    check_locations(data.get("parameters"), config)
    instances = data.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequestError('the body must hold "instances": a non-empty list of images')
    if len(instances) > config.max_instances:
        raise PayloadTooLargeError(
            f"{len(instances)} instances, over the limit of {config.max_instances} a request"
        )
    settings = explain_settings(data.get("parameters"), config)
    images = [read_instance(item, i, config) for i, item in enumerate(instances)]
    return ExplainRequest(images, settings)


def check_locations(value: Any, config: ExplainerConfig, where: str = "parameters") -> None:
    """Refuse a location key (:data:`LOCATION_KEYS`) that does not name the configured
    predictor, before anything else is read of the request."""
    if not isinstance(value, dict):
        return
    for key in LOCATION_KEYS:
        if key in value:
            named = value[key]
            if not (isinstance(named, str) and config.names_predictor(named)):
                raise ForbiddenError(
                    f"{where}.{key}: this explainer scores through its configured predictor "
                    "only; a request cannot name another host or URL"
                )


def explain_settings(parameters: Any, config: ExplainerConfig) -> dict[str, Any]:
    """The operator's defaults with the request's ``parameters`` over them, within limits."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise BadRequestError('"parameters" must be a JSON object')
    given = {k: v for k, v in parameters.items() if k not in LOCATION_KEYS}
    try:
        params = ExplainParameters.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise BadRequestError(f"parameters: {problems}") from exc
    settings = {**config.defaults, **params.model_dump(exclude_none=True)}
    for name, allowed in (
        ("segmentation", SEGMENTATIONS),
        ("baseline", BASELINES),
        ("method", BLACK_BOX_METHODS),
    ):
        if name in settings and settings[name] not in allowed:
            raise BadRequestError(
                f"parameters.{name} must be one of {', '.join(allowed)}, not {settings[name]!r}"
            )
    for name, limit in (
        ("samples", config.max_samples),
        ("max_samples", config.max_samples),
        ("segments", config.max_segments),
    ):
        if name in settings and settings[name] > limit:
            raise BadRequestError(f"parameters.{name} may be at most {limit}")
    return settings


def read_instance(item: Any, index: int, config: ExplainerConfig) -> np.ndarray:
    """One instance as an RGB uint8 array (see the module's docstring for the forms)."""
    where = f"instances[{index}]"
    if isinstance(item, dict):
        check_locations(item, config, where)
        key = next((k for k in IMAGE_KEYS if k in item), None)
        if key is None:
            raise BadRequestError(
                f"{where}: no image; give a base64 string, or an object with one of "
                f"{', '.join(IMAGE_KEYS)}"
            )
        value = item[key]
        if isinstance(value, dict):
            if "b64" not in value:
                raise BadRequestError(f'{where}.{key}: expected {{"b64": "..."}}')
            value = value["b64"]
        if not isinstance(value, str):
            raise BadRequestError(f"{where}.{key}: expected a base64 string")
        return decode_image(b64_bytes(value, where), max_pixels=config.max_pixels)
    if isinstance(item, str):
        return decode_image(b64_bytes(item, where), max_pixels=config.max_pixels)
    if isinstance(item, list):
        return read_pixels(item, where, config.max_pixels)
    raise BadRequestError(f"{where}: expected a base64 string, an object or nested arrays")


def b64_bytes(text: str, where: str) -> bytes:
    """Bytes of a base64 string: standard or URL-safe, padding optional, a data URL's too."""
    value = _DATA_URL.sub("", text.strip(), count=1)
    value = "".join(value.split())
    if not value or not _B64_CHARS.match(value):
        raise BadRequestError(f"{where}: not valid base64")
    value = value.rstrip("=")
    value += "=" * (-len(value) % 4)
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"{where}: not valid base64") from exc


def read_pixels(item: list[Any], where: str, max_pixels: int) -> np.ndarray:
    """Nested arrays ``[H][W][3]`` or ``[H][W]`` of 0–255 as an RGB uint8 image."""
    try:
        array = np.asarray(item, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise BadRequestError(f"{where}: nested arrays of numbers must be rectangular") from exc
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise BadRequestError(f"{where}: pixels must be [H][W][3] or [H][W], got {array.shape}")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise PayloadTooLargeError(f"{where}: over the limit of {max_pixels} pixels")
    if not np.isfinite(array).all() or array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise BadRequestError(f"{where}: pixel values must lie in 0..255")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return decode_image(np.rint(array).astype(np.uint8), max_pixels=max_pixels)
