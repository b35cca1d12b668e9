"""Sample photos bundled with scikit-image (no download): the demo's and the tests' images."""

from __future__ import annotations

import numpy as np

#: name → scikit-image loader, with what the photo shows.
SAMPLE_PHOTOS = {
    "chelsea": "a tabby cat",
    "coffee": "a cup of espresso",
    "astronaut": "an astronaut",
    "rocket": "a rocket on its pad",
    "camera": "a photographer with a camera on a tripod (gray)",
}


def sample_photo(name: str) -> np.ndarray:
    """One bundled photo as RGB uint8."""
    from skimage import data

    if name not in SAMPLE_PHOTOS:
        raise KeyError(f"unknown sample photo {name!r}; known: {', '.join(SAMPLE_PHOTOS)}")
    img = np.asarray(getattr(data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def sample_photos() -> dict[str, np.ndarray]:
    """Every bundled sample photo, by name."""
    return {name: sample_photo(name) for name in SAMPLE_PHOTOS}
