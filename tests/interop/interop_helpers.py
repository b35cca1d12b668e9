"""Helpers of the interop tests: the running servers' descriptions, free ports, a tiny ONNX
classifier, a photo."""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from limner.client import APIClient
from loopback import free_port  # noqa: F401 (re-exported to the tests)

FAST = {"samples": 64, "segmentation": "grid", "segments": 8, "baseline": "gray"}


@dataclass
class Server:
    """A running ``limner serve``: its URLs, a key, the deployment's name."""

    http: str
    grpc: str
    key: str
    model: str
    photo: Path

    def client(self) -> APIClient:
        return APIClient(self.http, api_key=self.key)


#: The header the KServe test server insists on.
SECRET_HEADER = ("X-Api-Key", "s3cret-remote-key")
LABELS = ["dark", "bright"]


def bright_onnx(path: Path) -> Path:
    """A real (if simple) binary classifier as ONNX: logits of dark/bright from the mean of
    NCHW pixels in 0..1, computed separately on the left and right halves (right counts 3×)."""
    import torch

    class Bright(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = x.shape[3] // 2
            s = x[:, :, :, :w].mean((1, 2, 3)) + 3 * x[:, :, :, w:].mean((1, 2, 3))
            z = (s / 4 - 0.5) * 12
            return torch.stack([-z, z], dim=1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Bright(),
            (torch.zeros(1, 3, 32, 32),),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


@dataclass
class KServe:
    """A running KServe ModelServer: its model's HTTP URL and gRPC URL."""

    url: str
    onnx: Path
    process: subprocess.Popen[bytes]
    grpc_url: str


def half_bright(height: int = 48, width: int = 64) -> np.ndarray:
    """Dark left half, bright right half."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[:, width // 2 :] = 230
    return image
