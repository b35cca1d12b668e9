"""Reading a training folder: ``DATA_DIR/train/<class>/*`` and ``DATA_DIR/validation/<class>/*``.

Every image is decoded to RGB and resized to one square size (the "standardize the image size"
step); rescaling to the network's range is part of the model's preprocessing
(:class:`limner.models.InputSpec`), so the exported model takes the same uint8 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from limner.errors import ImageDecodeError, InvalidInputError
from limner.imaging import read_image, resize

SPLITS = ("train", "validation")

#: File endings taken as images; any other visible file in a class folder is an error.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


@dataclass(frozen=True)
class Split:
    """The images of one split at the training size, with integer labels."""

    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ImageFolderData:
    """A training data set: class names (sorted folder names) and two splits."""

    classes: list[str]
    train: Split
    validation: Split
    image_size: int


def _visible(entries: list[Path]) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def scan_split(split_dir: Path) -> dict[str, list[Path]]:
    """The image files of each class folder of one split, checking the layout.

    Raises:
        InvalidInputError: a missing split folder, a stray file beside the class folders,
            an empty class folder, or a file that is not an image.
    """
    if not split_dir.is_dir():
        raise InvalidInputError(
            f"{split_dir}: folder not found; a data folder needs train/ and validation/, "
            "each with one sub-folder of images per class"
        )
    entries = _visible(list(split_dir.iterdir()))
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise InvalidInputError(
            f"{split_dir}: holds the file {stray[0].name}; put images in one sub-folder per class"
        )
    classes: dict[str, list[Path]] = {}
    for folder in entries:
        files = _visible([p for p in folder.iterdir() if not p.is_dir()])
        if not files:
            raise InvalidInputError(f"{folder}: class folder has no images")
        others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            raise InvalidInputError(
                f"{folder}: {others[0].name} is not an image file "
                f"(expected {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        classes[folder.name] = files
    return classes


def scan_folder(data_dir: str | Path) -> tuple[list[str], dict[str, dict[str, list[Path]]]]:
    """Check a data folder's layout; return the class names and each split's files per class."""
    root = Path(data_dir)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: data folder not found")
    splits = {split: scan_split(root / split) for split in SPLITS}
    train_classes = sorted(splits["train"])
    if len(train_classes) < 2:
        raise InvalidInputError(
            f"{root / 'train'}: found {len(train_classes)} class folder(s); "
            "a classifier needs at least two"
        )
    val_classes = sorted(splits["validation"])
    if val_classes != train_classes:
        missing = sorted(set(train_classes) ^ set(val_classes))
        raise InvalidInputError(
            f"{root / 'validation'}: class folders differ from train/ ({', '.join(missing)}); "
            "both splits need the same classes"
        )
    return train_classes, splits


def _load(files: dict[str, list[Path]], classes: list[str], size: int) -> Split:
    images, labels, paths = [], [], []
    for index, name in enumerate(classes):
        for path in files[name]:
            try:
                image = read_image(path)
            except ImageDecodeError as exc:
                raise InvalidInputError(f"{path}: not a readable image ({exc.message})") from exc
            images.append(resize(image, size, size))
            labels.append(index)
            paths.append(path)
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64), paths)


def typical_size(data_dir: str | Path, *, cap: int = 224, floor: int = 32) -> int:
    """The median shorter side of a sample of the training images, within ``[floor, cap]``."""
    from PIL import Image

    _, splits = scan_folder(data_dir)
    files = [p for paths in splits["train"].values() for p in paths[:20]]
    sides = []
    for path in files:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except Exception as exc:
            raise InvalidInputError(f"{path}: not a readable image ({exc})") from exc
    return int(min(cap, max(floor, int(np.median(sides)))))


def load_image_folder(data_dir: str | Path, image_size: int) -> ImageFolderData:
    """Read and check a data folder, resizing every image to ``image_size``×``image_size``."""
    if image_size < 16:
        raise InvalidInputError(f"image size must be at least 16 pixels, not {image_size}")
    classes, splits = scan_folder(data_dir)
    return ImageFolderData(
        classes=classes,
        train=_load(splits["train"], classes, image_size),
        validation=_load(splits["validation"], classes, image_size),
        image_size=image_size,
    )
