"""Remote models that speak the Open Inference (KServe v2) protocol over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from limner.errors import InvalidInputError, ModelError, ModelUnavailableError
from limner.models.base import Model
from limner.models.metadata import InputSpec, ModelMetadata
from limner.protocol import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadataResponse,
    RequestInput,
    decode_tensor,
)


def raw_pixels_spec(width: int, height: int) -> InputSpec:
    """An input spec that sends uint8 NHWC pixels as they are (what limner's own server takes)."""
    return InputSpec(width=width, height=height, layout="NHWC", dtype="uint8", scale=1.0)


class RemoteModel(Model):
    """A classifier behind ``http(s)://host/v2/models/NAME``.

    Images are sent as one tensor per batch: UINT8 ``[N,H,W,3]`` when the input spec takes raw
    pixels, else the preprocessed FP32 tensor. The output named ``probability`` (or the first
    output) is read as the class scores.
    """

    preferred_batch_size = 32

    def __init__(
        self,
        url: str,
        metadata: ModelMetadata | None = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
        input_name: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``client``: the HTTP client to call through (the service passes one that reaches
        only allowed addresses, :func:`limner.net.guarded_client`); default a plain one."""
        self.url = url.rstrip("/")
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._client.headers.update(headers or {})
        remote: dict[str, Any] = {}
        if metadata is None or input_name is None:
            remote = self._fetch_metadata()
        if metadata is None:
            metadata = self._metadata_from(remote)
        self._input_name = input_name or remote.get("input_name") or "image"
        super().__init__(metadata, name=metadata.name)

    def _fetch_metadata(self) -> dict[str, Any]:
        try:
            resp = self._client.get(self.url)
        except httpx.HTTPError as exc:
            raise ModelUnavailableError(f"{self.url}: cannot be reached ({exc})") from exc
        if resp.status_code != 200:
            raise ModelError(f"{self.url}: metadata request answered {resp.status_code}")
        try:
            meta = ModelMetadataResponse.model_validate(resp.json())
        except ValueError as exc:
            raise ModelError(f"{self.url}: not an Open Inference model endpoint") from exc
        params = meta.parameters or {}
        return {
            "meta": meta,
            "params": params,
            "input_name": meta.inputs[0].name if meta.inputs else None,
        }

    def _metadata_from(self, remote: dict[str, Any]) -> ModelMetadata:
        params = remote.get("params") or {}
        if "limner_model" in params:
            md = ModelMetadata.from_dict(params["limner_model"])
            if md.input.dtype != "uint8":  # limner's server preprocesses itself
                md = ModelMetadata(
                    labels=md.labels,
                    input=raw_pixels_spec(md.input.width, md.input.height),
                    output="probabilities",
                    problem_type=md.problem_type,
                    name=md.name,
                )
            return md
        raise InvalidInputError(
            f"{self.url}: the endpoint does not describe its labels and input; pass labels and "
            "input settings (a limner-model.json) for this model"
        )

    def _forward(self, x: np.ndarray) -> np.ndarray:
        dtype = "UINT8" if x.dtype == np.uint8 else "FP32"
        req = InferenceRequest(
            inputs=[
                RequestInput(
                    name=self._input_name,
                    shape=list(x.shape),
                    datatype=dtype,
                    data=x.astype(np.uint8 if dtype == "UINT8" else np.float32)
                    .reshape(-1)
                    .tolist(),
                )
            ],
            parameters={"log": False},
        )
        try:
            resp = self._client.post(f"{self.url}/infer", json=req.model_dump(exclude_none=True))
        except httpx.HTTPError as exc:
            raise ModelUnavailableError(f"{self.url}: cannot be reached ({exc})") from exc
        if resp.status_code != 200:
            raise ModelError(f"{self.url}: scoring answered {resp.status_code}")
        try:
            out = InferenceResponse.model_validate(resp.json())
        except ValueError as exc:
            raise ModelError(f"{self.url}: not an Open Inference response") from exc
        chosen = next((o for o in out.outputs if o.name == "probability"), None) or out.outputs[0]
        return decode_tensor(chosen).astype(np.float32)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
