"""Image decoding, resizing and rendering of explanation panes."""

from limner.imaging.decode import (
    DEFAULT_MAX_PIXELS,
    ImageInput,
    check_image,
    decode_image,
    header_pixels,
    read_image,
)
from limner.imaging.png import encode_png
from limner.imaging.render import heatmap, negative_pane, positive_pane
from limner.imaging.transform import resize, resize_labels

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageInput",
    "check_image",
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
