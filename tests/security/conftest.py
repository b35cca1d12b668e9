"""Attack-test fixtures: one real ``limner serve`` on loopback for the whole folder, a fake remote
model service the operator allows, and a folder of models an admin key may deploy from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sec_helpers import (
    HANG_SECONDS,
    LOAD_TIMEOUT,
    QUOTA_BYTES,
    SLOW_SECONDS,
    TINY_META,
    Serve,
    free_port,
    remote_service,
    serve,
    tiny_onnx,
)

from limner.net import UrlPolicy


@pytest.fixture(scope="session")
def remote() -> Iterator[str]:
    """Base URL of the allowed Open Inference service (``bright``, ``slow``, ``hang``)."""
    with remote_service(SLOW_SECONDS, HANG_SECONDS) as url:
        yield url


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's model root, holding one model directory ``tiny``."""
    root = tmp_path_factory.mktemp("model-roots")
    (root / "tiny").mkdir()
    tiny_onnx(root / "tiny" / "model.onnx")
    (root / "tiny" / "limner-model.json").write_text(json.dumps(TINY_META))
    return root


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, remote: str, roots: Path) -> Iterator[Serve]:
    """``limner serve`` with the remote service allowed, ``roots`` listed, a small quota."""
    data_dir = tmp_path_factory.mktemp("attacked") / "data"
    env = {
        "LIMNER_ALLOWED_URLS": f"{remote}/",
        "LIMNER_MODEL_ROOTS": str(roots),
        "LIMNER_SPACE_QUOTA_BYTES": str(QUOTA_BYTES),
        "LIMNER_MODEL_LOADS": "2",
        "LIMNER_MODEL_LOAD_TIMEOUT": str(LOAD_TIMEOUT),
    }
    assert UrlPolicy.parse(env["LIMNER_ALLOWED_URLS"]).lists(f"{remote}/v2/models/bright")
    with serve(data_dir, free_port(), env) as running:
        yield running
