"""Synthetic data sets in the layout ``limner train`` reads (``train/`` + ``validation/``)."""

from limner.datasets.shapes import (
    DEFAULT_CLASSES,
    PRESETS,
    SHAPES,
    ShapeSample,
    ShapesSummary,
    draw_shape,
    make_shapes,
    mask_path,
    read_mask,
)

__all__ = [
    "DEFAULT_CLASSES",
    "PRESETS",
    "SHAPES",
    "ShapeSample",
    "ShapesSummary",
    "draw_shape",
    "make_shapes",
    "mask_path",
    "read_mask",
]
