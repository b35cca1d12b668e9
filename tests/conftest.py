"""Shared fixtures: the real built-in model, loaded once per session."""

from __future__ import annotations

import pytest

import limner
from limner.models import Model


@pytest.fixture(scope="session")
def lite0() -> Model:
    """The built-in efficientnet-lite0 on ONNX Runtime (exported once, then cached)."""
    return limner.load_model("efficientnet-lite0", device="cpu")
