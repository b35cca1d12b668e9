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

from limner.client._comparison import Comparison, Comparisons
from limner.client._core import Core, error_from_response
from limner.client._explanation import Explanation, ExplanationFailedError
from limner.client._resources import (
    Deployment,
    Deployments,
    Explainers,
    Explanations,
    Reports,
    Subscription,
    Subscriptions,
    Transactions,
)


@dataclass
class Scoring:
    """One scored image (``scoring_id`` is ``None`` when the deployment is not subscribed).

    An object detector's scoring has ``detections``: its boxes, best first, each ``{"index",
    "box": [x0, y0, x1, y1] (the photo's pixels), "label", "class_index", "score"}``; its
    ``label`` and ``probability`` are the best box's."""

    scoring_id: str | None
    label: str
    class_index: int
    probability: float
    probabilities: dict[str, float]
    detections: list[dict[str, Any]] | None = None


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
        self.comparisons = Comparisons(self._core)
        self.reports = Reports(self._core)
        self.explainers = Explainers(self._core)

    @property
    def base_url(self) -> str:
        """The service's base URL."""
        return self._core.base_url

    def score(
        self, deployment: Deployment | str, image: ImageLike, *, external_id: str | None = None
    ) -> Scoring:
        """Score one image (a path, encoded bytes, a PIL image or an RGB uint8 array); a
        subscribed deployment logs it with ``external_id`` (your case or request id, unique in
        the subscription) and, for a path, the file name as its ``source``."""
        ids: list[str | None] | None = None if external_id is None else [external_id]
        return self.score_many(deployment, [image], external_ids=ids)[0]

    def score_many(
        self,
        deployment: Deployment | str,
        images: list[ImageLike],
        *,
        external_ids: list[str | None] | None = None,
    ) -> list[Scoring]:
        """Score several images in one request (``external_ids``: one per image, or none)."""
        if external_ids is not None and len(external_ids) != len(images):
            raise ValueError(f"{len(images)} images but {len(external_ids)} external_ids")
        dep_id = getattr(deployment, "id", deployment)
        files = []
        sources = []
        for i, im in enumerate(images):
            name = _source(im)
            files.append(
                ("file", (name or f"image{i}.png", _encode(im), "application/octet-stream"))
            )
            sources.append(name or "")
        form: dict[str, list[str]] = {"source": sources}
        if external_ids is not None:
            form["external_id"] = [e or "" for e in external_ids]
        path = f"/v1/deployments/{dep_id}/predictions"
        data = self._core.json("POST", path, files=files, data=form)
        return [Scoring(**p) for p in data["predictions"]]

    def close(self) -> None:
        """Close the connection pool."""
        self._core.close()

    def __enter__(self) -> APIClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _source(image: ImageLike) -> str | None:
    """The file name of an image given as a path (``None`` otherwise)."""
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name or None
    return None


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
    "Comparison",
    "Deployment",
    "Explanation",
    "ExplanationFailedError",
    "Scoring",
    "Subscription",
    "error_from_response",
]
