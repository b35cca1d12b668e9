"""Textured backgrounds for synthetic images: smooth noise, stripes and checks, with grain.

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


def smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two colours mixed by low-frequency value noise (clouds)."""
    cells = int(rng.integers(3, 9))
    grid = rng.uniform(0, 255, size=(cells, cells)).astype(np.float32)
    field = np.asarray(
        Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    weight = np.clip(field / 255.0, 0.0, 1.0)
    return _blend(weight, random_colour(rng), random_colour(rng))


def stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soft stripes of two colours at a random angle and period."""
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(size / 12, size / 4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    weight = 0.5 + 0.5 * np.sin(phase + rng.uniform(0, 2 * np.pi))
    return _blend(weight, random_colour(rng), random_colour(rng))


def checks(rng: np.random.Generator, size: int) -> np.ndarray:
    """A checkerboard of two colours with a random cell size and offset."""
    cell = int(rng.integers(max(2, size // 16), max(3, size // 5)))
    off_y, off_x = rng.integers(0, cell, size=2)
    yy, xx = np.mgrid[0:size, 0:size]
    weight = (((yy + off_y) // cell + (xx + off_x) // cell) % 2).astype(np.float32)
    return _blend(weight, random_colour(rng), random_colour(rng))


TEXTURES: tuple[Texture, ...] = (smooth_noise, stripes, checks)


def background(rng: np.random.Generator, size: int, grain: float = 12.0) -> np.ndarray:
    """A random textured background ``(size, size, 3)`` float32, with per-pixel grain."""
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    image = texture(rng, size)
    image += rng.normal(0.0, grain, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255)
