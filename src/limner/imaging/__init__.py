"""Image decoding, resizing and rendering of explanation panes."""

from limner.imaging.decode import (
    DEFAULT_MAX_PIXELS,
    ImageInput,
    decode_image,
    header_pixels,
    read_image,
)
from limner.imaging.render import encode_png, heatmap, negative_pane, positive_pane
from limner.imaging.transform import resize, resize_labels

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageInput",
    "decode_image",
    "encode_png",
    "header_pixels",
    "heatmap",
    "negative_pane",
    "positive_pane",
    "read_image",
    "resize",
    "resize_labels",
]
