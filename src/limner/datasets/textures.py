"""Textured backgrounds for synthetic images: clouds, soft stripes and marble, with grain.

Every generator takes a seeded ``numpy.random.Generator`` and returns RGB float32 in [0, 255],
so a data set is the same on every machine for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

Texture = Callable[[np.random.Generator, int], np.ndarray]


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour, float32 in [0, 255]."""
    return rng.uniform(0, 255, size=3).astype(np.float32)


def _blend(weight: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = weight[..., None]
    return (a * (1.0 - w) + b * w).astype(np.float32)


def _noise_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a random ``cells``×``cells`` grid upsampled smoothly."""
    grid = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
    field = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(field, dtype=np.float32), 0.0, 1.0)


def smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two colours mixed by two octaves of low-frequency value noise (clouds)."""
    cells = int(rng.integers(3, 7))
    weight = 0.65 * _noise_field(rng, size, cells) + 0.35 * _noise_field(rng, size, 2 * cells)
    return _blend(weight, random_colour(rng), random_colour(rng))


def stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soft (sinusoidal) stripes of two colours at a random angle and period."""
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(size / 10, size / 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    weight = 0.5 + 0.5 * np.sin(phase + rng.uniform(0, 2 * np.pi))
    return _blend(weight, random_colour(rng), random_colour(rng))


def marble(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stripes warped by value noise: veined, marble-like."""
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(size / 6, size / 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    warp = _noise_field(rng, size, int(rng.integers(3, 6))) * rng.uniform(4.0, 9.0)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period) + warp
    weight = 0.5 + 0.5 * np.sin(phase)
    return _blend(weight, random_colour(rng), random_colour(rng))


TEXTURES: tuple[Texture, ...] = (smooth_noise, stripes, marble)


def background(rng: np.random.Generator, size: int, grain: float = 6.0) -> np.ndarray:
    """A random textured background ``(size, size, 3)`` float32, with per-pixel grain."""
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    image = texture(rng, size)
    image += rng.normal(0.0, grain, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255)
