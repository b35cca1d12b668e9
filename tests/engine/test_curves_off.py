"""Explanations without their curves (``curves=False``): the same weights for the same seed,
fewer model evaluations, the faithfulness fields null in the RESULT; refused for the gradient
methods, whose fit is measured on the curves."""

from __future__ import annotations

import numpy as np
import pytest

from limner.errors import InvalidInputError
from limner.explain import explain
from patch_models import brightness_model, patch_image, torch_brightness

FIELDS = (
    "deletion_auc",
    "insertion_auc",
    "random_deletion_auc",
    "random_insertion_auc",
    "sufficient_regions",
    "necessary_regions",
)


@pytest.mark.parametrize("method", ["kernelshap", "lime", "occlusion"])
def test_without_curves_the_weights_are_the_same_and_cheaper(method: str) -> None:
    model, image = brightness_model(), patch_image()
    settings = {"method": method, "segmentation": "grid", "segments": 16, "seed": 3}
    full = explain(image, model, **settings)
    lean = explain(image, model, curves=False, **settings)
    assert np.array_equal(full.classes[0].weights, lean.classes[0].weights)
    assert lean.model_evaluations < full.model_evaluations
    result, reference = lean.to_dict(), full.to_dict()
    for field in FIELDS:
        assert result["explanations"][0][field] is None
        assert reference["explanations"][0][field] is not None
    assert result["explanations"][0]["regions"] == reference["explanations"][0]["regions"]


def test_a_gradient_method_keeps_its_curves() -> None:
    with pytest.raises(InvalidInputError, match="region methods"):
        explain(patch_image(), torch_brightness(), method="integrated-gradients", curves=False)
