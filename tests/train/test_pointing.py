"""Pointing game: explanations of the trained shapes model point at the shape.

For 50 validation images (25 of each class) the predicted class is explained (kernelshap,
20 SLIC regions, 300 samples, blur baseline) and the top region (the one with the largest
positive weight) is checked against the ground-truth mask. It is a hit when it lies on the
shape: at least half of its pixels inside the mask (widened by 2 pixels for the anti-aliased
outline), or it holds at least half of the shape's pixels. The second clause counts a region
that straddles the outline but takes in most of the shape; to keep it from counting a region
that swallows the whole image, the test also requires the images to be cut into many regions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

import limner
from limner.datasets import read_mask
from limner.imaging import read_image

SETTINGS = {
    "method": "kernelshap",
    "segmentation": "slic",
    "segments": 20,
    "samples": 300,
    "baseline": "blur",
}


def is_hit(region: np.ndarray, mask: np.ndarray) -> bool:
    """Whether a region (boolean map) lies on the shape, as defined in the module notes."""
    on_shape = binary_dilation(mask, iterations=2)[region].mean() >= 0.5
    holds_shape = (region & mask).sum() >= 0.5 * mask.sum()
    return bool(on_shape or holds_shape)


def test_top_region_is_on_the_shape(trained_dir: Path, shapes_dir: Path) -> None:
    model = limner.load_model(trained_dir, device="cpu")
    files = [
        path
        for name in model.labels
        for path in sorted((shapes_dir / "validation" / name).glob("*.png"))[:25]
    ]
    assert len(files) == 50
    hits, region_counts = [], []
    for path in files:
        image = read_image(path)
        predicted = int(model.predict(image[None])[0].argmax())
        exp = limner.explain(image, model, classes=[predicted], seed=0, **SETTINGS)
        result = exp.to_dict()["explanations"][0]
        top = result["regions"][0]
        region_counts.append(len(result["regions"]))
        hits.append(
            top["weight"] > 0 and is_hit(exp.labels_map == top["id"], read_mask(path, shapes_dir))
        )
    rate = float(np.mean(hits))
    print(
        f"\n[pointing game] {sum(hits)}/{len(hits)} = {rate:.0%}; regions median "
        f"{int(np.median(region_counts))}, min {min(region_counts)}"
    )
    assert np.median(region_counts) >= 12
    assert rate >= 0.9
