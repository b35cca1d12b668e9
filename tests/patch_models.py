"""The known-patch model and image shared by the engine, gradient, CLI and RESULT-docs tests."""

from __future__ import annotations

import numpy as np

from limner.models import CallableModel, InputSpec, ModelMetadata


def brightness_model(size: int = 64) -> CallableModel:
    """P(bright) = mean brightness of the top-left quarter of the size×size input, in [0, 1]."""
    meta = ModelMetadata(
        labels=["dark", "bright"],
        input=InputSpec(width=size, height=size, layout="NHWC", dtype="uint8", scale=1.0),
        output="probabilities",
        problem_type="binary",
        name="top-left-brightness",
    )
    half = size // 2

    def fn(x: np.ndarray) -> np.ndarray:
        p = x[:, :half, :half, :].astype(np.float64).mean(axis=(1, 2, 3)) / 255.0
        return np.stack([1 - p, p], axis=1)

    return CallableModel(fn, meta)


def patch_image() -> np.ndarray:
    """A 128×128 noisy image whose top-left quarter is a white patch."""
    rng = np.random.default_rng(3)
    img = rng.integers(40, 200, size=(128, 128, 3)).astype(np.uint8)
    img[:64, :64] = 255  # the bright patch in the top-left quarter
    return img
