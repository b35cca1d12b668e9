"""A seeded synthetic data set of coloured shapes on textured backgrounds.

The layout is the one ``limner train`` reads, plus the ground-truth masks::

    DIR/train/<class>/<class>_0000.png
    DIR/validation/<class>/<class>_0160.png
    DIR/masks/train/<class>/<class>_0000.png        (0 = background, 255 = shape)
    DIR/masks/validation/<class>/<class>_0160.png
    DIR/dataset.json                                 (how it was made, and the counts)

Two presets. ``textured`` (the default): every shape covers the same area whatever its class,
so that size is no cue, on a textured background; the position, size, rotation, colours and
texture are random. ``plain``: one high-contrast shape on a plain background, each class at its
own size (the first class smallest), so that a small network trained from scratch learns it in
a minute; position, rotation and colours stay random. Each image is drawn from
its own generator seeded by ``(seed, class index, image index)``: the same call gives the same
files on every machine.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from limner.datasets.textures import background, random_colour
from limner.errors import InvalidInputError

SPLITS = ("train", "validation")
MASKS_DIR = "masks"
DEFAULT_CLASSES = ("circle", "square", "triangle")
#: Data set presets: ``textured`` (equal areas, textured backgrounds; the harder one) and
#: ``plain`` (one size per class, plain backgrounds, high contrast).
PRESETS = ("textured", "plain")
#: Side of the plain preset's shapes, as a fraction of the image side: the smallest class's and
#: the largest class's (the others lie evenly between), each drawn within ±0.03.
_PLAIN_SIDES = (0.2, 0.6)

_SUPERSAMPLE = 4


def _regular(n: int) -> np.ndarray:
    angles = np.arange(n) * (2 * np.pi / n) - np.pi / 2
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    outer = _regular(10)
    radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return outer * radius[:, None]


def _cross() -> np.ndarray:
    a, b = 1.0, 0.33
    pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b)]
    pts += [(b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
    return np.asarray(pts, dtype=np.float64)


#: Unit outlines (circumradius 1) of the shapes the generator knows.
SHAPES: dict[str, np.ndarray] = {
    "circle": _regular(96),
    "square": _regular(4),
    "triangle": _regular(3),
    "hexagon": _regular(6),
    "star": _star(),
    "cross": _cross(),
}


@dataclass(frozen=True)
class ShapeSample:
    """One synthetic image and the mask of its shape."""

    image: np.ndarray  # (size, size, 3) uint8
    mask: np.ndarray  # (size, size) bool


@dataclass(frozen=True)
class ShapesSummary:
    """What :func:`make_shapes` wrote."""

    directory: str
    classes: list[str]
    size: int
    seed: int
    counts: dict[str, dict[str, int]]  # split -> class -> images
    preset: str = "textured"


def _area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _outline(
    rng: np.random.Generator, shape: str, size: int, side: tuple[float, float] = (0.28, 0.45)
) -> np.ndarray:
    """The shape's polygon in pixel coordinates: random area (the square root of the area lies
    in ``side`` × ``size``), rotation and position."""
    unit = SHAPES[shape]
    area = (rng.uniform(*side) * size) ** 2
    radius = np.sqrt(area / _area(unit))
    radius = min(radius, size / 2 - 3)
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = unit @ rot.T * radius
    low = -points.min(axis=0) + 2
    high = size - points.max(axis=0) - 2
    centre = rng.uniform(low, np.maximum(high, low))
    return points + centre


def _alpha(points: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased coverage of the polygon, float32 in [0, 1]."""
    big = size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    scaled = [(float(x) * _SUPERSAMPLE, float(y) * _SUPERSAMPLE) for x, y in points]
    ImageDraw.Draw(canvas).polygon(scaled, fill=255)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> np.ndarray:
    """A random colour at least a fair distance from ``against`` (the background's mean)."""
    colour = random_colour(rng)
    for _ in range(50):
        if float(np.linalg.norm(colour - against)) >= 110.0:
            break
        colour = random_colour(rng)
    return colour


def draw_shape(
    rng: np.random.Generator,
    shape: str,
    size: int = 96,
    *,
    preset: str = "textured",
    side: float | None = None,
) -> ShapeSample:
    """Draw one ``shape`` on a random background.

    Args:
        rng: the generator every random choice is drawn from.
        shape: one of :data:`SHAPES`.
        size: side of the square image in pixels.
        preset: ``textured`` (a textured background, the shape at a random size) or ``plain``
            (a plain background, a high-contrast shape of side ``side`` ± 0.03).
        side: the plain preset's shape side, as a fraction of ``size`` (default 0.4).
    """
    if shape not in SHAPES:
        raise InvalidInputError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    if size < 16:
        raise InvalidInputError(f"image size must be at least 16 pixels, not {size}")
    if preset not in PRESETS:
        raise InvalidInputError(f"unknown preset {preset!r}; choose {' or '.join(PRESETS)}")
    if preset == "plain":
        return _draw_plain(rng, shape, size, 0.4 if side is None else side)
    back = background(rng, size)
    alpha = _alpha(_outline(rng, shape, size), size)
    colour = _contrasting_colour(rng, back.reshape(-1, 3).mean(axis=0))
    shade = rng.uniform(0.8, 1.0, size=(1, 1, 1)).astype(np.float32)
    fore = colour[None, None, :] * shade + rng.normal(0, 6, size=back.shape).astype(np.float32)
    image = back * (1.0 - alpha[..., None]) + fore * alpha[..., None]
    return ShapeSample(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        mask=alpha >= 0.5,
    )


def _draw_plain(rng: np.random.Generator, shape: str, size: int, side: float) -> ShapeSample:
    """A dark shape on a light plain background, each in a random tint."""
    alpha = _alpha(_outline(rng, shape, size, (side - 0.03, side + 0.03)), size)
    back = rng.uniform(190, 250, size=3).astype(np.float32)
    fore = rng.uniform(10, 70, size=3).astype(np.float32)
    image = back * (1.0 - alpha[..., None]) + fore * alpha[..., None]
    return ShapeSample(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        mask=alpha >= 0.5,
    )


def _plain_side(class_index: int, classes: int) -> float:
    low, high = _PLAIN_SIDES
    return low + (high - low) * class_index / max(1, classes - 1)


def _parse_classes(classes: Sequence[str]) -> list[str]:
    names = [c.strip().lower() for c in classes if c.strip()]
    unknown = [c for c in names if c not in SHAPES]
    if unknown:
        raise InvalidInputError(
            f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(SHAPES)}"
        )
    if len(names) < 2 or len(set(names)) != len(names):
        raise InvalidInputError("give at least two different classes (two for a binary problem)")
    return names


def _prepare(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(f"{directory}: exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()):
        if not overwrite:
            raise InvalidInputError(
                f"{directory}: folder is not empty; "
                "choose a new folder or overwrite it (--overwrite)"
            )
        for name in (*SPLITS, MASKS_DIR):
            shutil.rmtree(directory / name, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def make_shapes(
    directory: str | Path,
    *,
    per_class: int = 200,
    size: int = 96,
    classes: Sequence[str] = DEFAULT_CLASSES,
    seed: int = 0,
    validation_fraction: float = 0.2,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    preset: str = "textured",
) -> ShapesSummary:
    """Write a shapes data set in the ``train/`` + ``validation/`` layout, with masks.

    Args:
        directory: the folder to write (created; must be empty unless ``overwrite``).
        per_class: images per class, over both splits (default 200).
        size: side of the square images in pixels (default 96).
        classes: shape names from :data:`SHAPES`; two give a binary problem.
        seed: the seed every image is drawn from (default 0).
        validation_fraction: share of each class put in ``validation/`` (default 0.2).
        overwrite: replace the ``train``, ``validation`` and ``masks`` folders of a non-empty
            ``directory``.
        progress: called as ``progress(done, total)`` after each image.
        preset: ``textured`` (equal areas on textured backgrounds: the harder set, for the
            frozen backbone of ``limner train``) or ``plain`` (one size per class on plain
            backgrounds, high contrast: the set a small network trained from scratch learns).
    """
    names = _parse_classes(classes)
    if preset not in PRESETS:
        raise InvalidInputError(f"unknown preset {preset!r}; choose {' or '.join(PRESETS)}")
    if per_class < 2:
        raise InvalidInputError(f"per_class must be at least 2, not {per_class}")
    if not 0.0 < validation_fraction < 1.0:
        raise InvalidInputError("validation_fraction must lie strictly between 0 and 1")
    root = Path(directory)
    _prepare(root, overwrite)
    n_val = min(per_class - 1, max(1, round(per_class * validation_fraction)))
    total = per_class * len(names)
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    done = 0
    for class_index, name in enumerate(names):
        for split in SPLITS:
            for sub in (Path(split), Path(MASKS_DIR) / split):
                (root / sub / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            split = "train" if i < per_class - n_val else "validation"
            rng = np.random.default_rng([seed, class_index, i])
            side = _plain_side(class_index, len(names))
            sample = draw_shape(rng, name, size, preset=preset, side=side)
            file = Path(split) / name / f"{name}_{i:04d}.png"
            Image.fromarray(sample.image).save(root / file, compress_level=1)
            mask = Image.fromarray(sample.mask.astype(np.uint8) * 255)
            mask.save(root / MASKS_DIR / file, compress_level=1)
            counts[split][name] = counts[split].get(name, 0) + 1
            done += 1
            if progress is not None:
                progress(done, total)
    summary = ShapesSummary(str(root), names, size, seed, counts, preset)
    (root / "dataset.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def mask_path(image_path: str | Path, data_dir: str | Path) -> Path:
    """Where the mask of a generated image lies (``DIR/masks/`` + the same relative path)."""
    rel = Path(image_path).resolve().relative_to(Path(data_dir).resolve())
    return Path(data_dir) / MASKS_DIR / rel


def read_mask(image_path: str | Path, data_dir: str | Path) -> np.ndarray:
    """The boolean mask of a generated image."""
    return np.asarray(Image.open(mask_path(image_path, data_dir))) > 127
