"""Python client of the limner service.

    from limner.client import APIClient
    client = APIClient("http://127.0.0.1:8080", api_key=KEY)
    dep = client.deployments.create(name="imagenet", model="efficientnet-lite0")
    sub = client.subscriptions.create(deployment_id=dep.id)
    sub.enable_explainability(method="kernelshap")
    scoring_id = client.score(dep, "cat.jpg").scoring_id
    exp = client.explanations.create(scoring_id).wait(timeout=120)
    exp.save("out/")

Errors come back as limner's own exceptions (:class:`limner.errors.NotFoundError`, ...).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from limner.client._core import Core, error_from_response
from limner.client._explanation import Explanation, ExplanationFailedError
from limner.client._resources import (
    Deployment,
    Deployments,
    Explanations,
    Subscription,
    Subscriptions,
    Transactions,
)


@dataclass
class Scoring:
    """One scored image (``scoring_id`` is ``None`` when the deployment is not subscribed)."""

    scoring_id: str | None
    label: str
    class_index: int
    probability: float
    probabilities: dict[str, float]


ImageLike = str | os.PathLike[str] | bytes | np.ndarray | Any


class APIClient:
    """A client of one limner service, acting in the space of ``api_key``."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._core = Core(
            base_url,
            api_key or os.environ.get("LIMNER_API_KEY"),
            timeout=timeout,
            transport=transport,
        )
        self.deployments = Deployments(self._core)
        self.subscriptions = Subscriptions(self._core)
        self.transactions = Transactions(self._core)
        self.explanations = Explanations(self._core)

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return self._core.base_url

    def score(self, deployment: Deployment | str, image: ImageLike) -> Scoring:
        """Score one image (a path, encoded bytes, a PIL image or an RGB uint8 array)."""
        return self.score_many(deployment, [image])[0]

    def score_many(self, deployment: Deployment | str, images: list[ImageLike]) -> list[Scoring]:
        """Score several images in one request."""
        dep_id = getattr(deployment, "id", deployment)
        files = [
            ("file", (f"image{i}.png", _encode(im), "application/octet-stream"))
            for i, im in enumerate(images)
        ]
        data = self._core.json("POST", f"/v1/deployments/{dep_id}/predictions", files=files)
        return [Scoring(**p) for p in data["predictions"]]

    def close(self) -> None:
        """Close the connection pool."""
        self._core.close()

    def __enter__(self) -> APIClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _encode(image: ImageLike) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    from limner.imaging import decode_image, encode_png

    if isinstance(image, np.ndarray):
        return encode_png(decode_image(image, max_pixels=10**10))
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # a PIL image
    return buf.getvalue()


__all__ = [
    "APIClient",
    "Deployment",
    "Explanation",
    "ExplanationFailedError",
    "Scoring",
    "Subscription",
    "error_from_response",
]
