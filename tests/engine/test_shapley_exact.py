"""KernelSHAP against brute-force Shapley values on the real efficientnet-lite0."""

from __future__ import annotations

import math

import numpy as np

import limner
from limner.imaging import resize
from limner.samples import sample_photo


def test_kernelshap_equals_brute_force_shapley_on_a_2x4_grid(lite0):
    photo = resize(sample_photo("chelsea"), 224, 224)
    result = limner.explain(
        photo,
        lite0,
        method="kernelshap",
        samples=256,
        segmentation="grid",
        segments=8,
        baseline="gray",
        seed=0,
    )
    d = result.to_dict()
    exp = d["explanations"][0]
    c = exp["class_index"]

    # 2 rows × 4 cols of 112×56 pixels, numbered row by row; switched-off cells become gray 128
    coalitions = np.arange(256)[:, None] >> np.arange(8)[None, :] & 1
    images = np.empty((256, 224, 224, 3), np.uint8)
    for k, bits in enumerate(coalitions):
        img = np.full_like(photo, 128)
        for cell in np.flatnonzero(bits):
            r, col = divmod(int(cell), 4)
            img[r * 112 : (r + 1) * 112, col * 56 : (col + 1) * 56] = photo[
                r * 112 : (r + 1) * 112, col * 56 : (col + 1) * 56
            ]
        images[k] = img
    v = np.concatenate([lite0.predict(images[i : i + 32])[:, c] for i in range(0, 256, 32)])
    v = v.astype(np.float64)
    shapley = np.zeros(8)
    for i in range(8):
        for s in range(256):
            if not s >> i & 1:
                size = bin(s).count("1")
                w = math.factorial(size) * math.factorial(8 - size - 1) / math.factorial(8)
                shapley[i] += w * (v[s | 1 << i] - v[s])

    weights = np.zeros(8)
    for region in exp["regions"]:
        weights[region["id"]] = region["weight"]
    np.testing.assert_allclose(weights, shapley, atol=1e-4)
    # efficiency: weights + intercept = probability on the whole image
    assert abs(weights.sum() + exp["intercept"] - exp["probability"]) < 1e-5
    assert abs(exp["probability"] - v[255]) < 1e-5
    assert abs(exp["intercept"] - v[0]) < 1e-5
    # grid boxes: cell 5 is row 1, col 1
    boxes = {r["id"]: r["bbox"] for r in exp["regions"]}
    assert boxes[5] == [56, 112, 112, 224]
    assert all(r["area"] == 112 * 56 for r in exp["regions"])
