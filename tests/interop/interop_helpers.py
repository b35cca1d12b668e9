"""Helpers of the interop tests: the running server's description, free ports."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from limner.client import APIClient

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
