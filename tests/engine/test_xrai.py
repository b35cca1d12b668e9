"""XRAI (Kapishnikov et al., ICCV 2019): agreement with the reference implementation (the
``saliency`` package's ``XRAI``), the model-randomization sanity check, and the method through
the engine (regions, weights, curves, panes) and on a model without gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import limner
from limner.errors import InvalidInputError
from limner.explain.methods.gradients import GradientAttributor
from limner.explain.methods.xrai import xrai_map, xrai_regions
from limner.imaging import resize
from limner.models.gradients import TorchForward, module_forward
from limner.models.zoo import efficientnet_lite0_metadata, efficientnet_lite0_module
from limner.samples import SAMPLE_PHOTOS, sample_photo
from patch_models import Brightness, brightness_meta, patch_image, torch_brightness

#: Integration steps for the tests: the comparison is of the growth, not of the attribution.
STEPS = 4
#: Photos the default run compares on; the others run with the slow tests.
FAST_PHOTOS = ("chelsea",)


def grid(values: np.ndarray, n: int = 28) -> np.ndarray:
    """The average of ``values`` (h, w) over an n × n grid of equal cells."""
    h, w = values.shape
    return values.reshape(n, h // n, n, w // n).mean(axis=(1, 3))


def top_class(forward: TorchForward, image: np.ndarray) -> int:
    with torch.no_grad():
        x = torch.from_numpy(image[None].astype(np.float32))
        return int(forward.probabilities(x).argmax())


def reference_call(forward: TorchForward, class_index: int) -> Any:
    """The reference's ``call_model_function``: gradients of the class probability with
    respect to the pixels (XRAI asks for them only when it computes its own attribution)."""
    from saliency.core import INPUT_OUTPUT_GRADIENTS

    def call(x: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict:
        pixels = torch.from_numpy(np.asarray(x, dtype=np.float32)).requires_grad_(True)
        score = forward.probabilities(pixels)[:, class_index].sum()
        (grad,) = torch.autograd.grad(score, pixels)
        return {INPUT_OUTPUT_GRADIENTS: grad.numpy()}

    return call


@pytest.fixture(scope="module")
def lite0_forward() -> TorchForward:
    return module_forward(
        efficientnet_lite0_module(), efficientnet_lite0_metadata(), torch.device("cpu")
    )


@pytest.mark.parametrize(
    "name",
    [n if n in FAST_PHOTOS else pytest.param(n, marks=pytest.mark.slow) for n in SAMPLE_PHOTOS],
)
def test_xrai_agrees_with_the_reference_implementation(lite0_forward, name):
    """limner's XRAI map against ``saliency.core.XRAI`` on the same attribution.

    Both get the same pixel attribution (limner's Integrated Gradients from black and white,
    averaged; given to the reference as ``base_attribution``, the same value in each channel,
    which its channel maximum turns back into that value), so only the candidate segments and
    the greedy growth are compared. Each pixel's value is the gain density of its region;
    Spearman rank correlation over a 28 × 28 grid of cell averages must be at least 0.9.

    The remaining differences: limner's coarsest Felzenszwalb scale is 1000 (the paper's range,
    50..1000), the reference's 1200; the reference resamples the image to 224 × 224 with a
    cubic spline before segmenting it, limner segments the model-sized image as it is.
    """
    from saliency.core import XRAI

    image = resize(sample_photo(name), 224, 224)
    c = top_class(lite0_forward, image)
    g = GradientAttributor("xrai", lite0_forward, steps=STEPS).attribute(image, image, c)
    grown = xrai_regions(image, g.pixels, None)
    ours = xrai_map(g.pixels, grown.labels, grown.count)
    ref = XRAI().GetMask(
        image.astype(np.float64),
        reference_call(lite0_forward, c),
        base_attribution=np.repeat(g.pixels[..., None], 3, axis=-1),
    )
    assert grown.grown > 10
    rho = float(spearmanr(grid(ours).ravel(), grid(ref).ravel())[0])
    assert rho >= 0.9, (name, rho)


def test_xrai_growth_on_a_known_attribution():
    """Growth by gain density on a hand-made attribution: the bright patch is ranked first, the
    regions tile the image, and a cap merges the rest into one last region."""
    image = patch_image()  # white top-left quarter on noise
    attribution = np.where(image[..., 0] == 255, 1.0, 0.0)
    attribution[64:, 64:] = -1.0  # the bottom-right quarter pushes down
    grown = xrai_regions(image, attribution, None)
    labels = grown.labels
    assert labels.shape == (128, 128) and set(np.unique(labels)) == set(range(grown.count))
    first = labels == 0
    assert attribution[first].mean() > 0.9  # region 0: (almost) only the patch
    values = xrai_map(attribution, labels, grown.count)
    means = [values[labels == i][0] for i in range(grown.count)]
    ranked = [m for i, m in enumerate(means) if i != grown.remainder]
    assert ranked == sorted(ranked, reverse=True)  # ids in XRAI's order
    capped = xrai_regions(image, attribution, 3)
    assert capped.count == 3 and capped.remainder == 2
    assert np.array_equal(capped.labels == 0, labels == 0)
    assert np.array_equal(capped.labels == 2, labels >= 2)


def cascading_randomization(module: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``module`` with every layer's weights re-initialized, from the classifier down
    to the input (Adebayo et al.)."""
    import copy

    torch.manual_seed(seed)
    model = copy.deepcopy(module)
    layers = [m for _, m in model.named_modules() if hasattr(m, "reset_parameters")]
    for layer in reversed(layers):
        layer.reset_parameters()
    return model


@pytest.mark.slow
def test_randomizing_the_weights_changes_the_xrai_map(lite0_forward):
    """Spearman rank correlation of |XRAI map| between the trained and the fully randomized
    network, averaged over the bundled photos (each photo's top class), is below 0.5, the bar
    of the other gradient methods (tests/engine/test_gradient_sanity.py)."""
    randomized = module_forward(
        cascading_randomization(lite0_forward.module),
        lite0_forward.metadata,
        torch.device("cpu"),
    )
    rhos = []
    for name in SAMPLE_PHOTOS:
        image = resize(sample_photo(name), 224, 224)
        c = top_class(lite0_forward, image)
        maps = []
        for forward in (lite0_forward, randomized):
            g = GradientAttributor("xrai", forward, steps=8).attribute(image, image, c)
            grown = xrai_regions(image, g.pixels, None)
            maps.append(xrai_map(g.pixels, grown.labels, grown.count))
        assert np.abs(maps[0]).sum() > 0
        rhos.append(float(spearmanr(np.abs(maps[0]).ravel(), np.abs(maps[1]).ravel())[0]))
    print("xrai randomization rhos", dict(zip(SAMPLE_PHOTOS, np.round(rhos, 3), strict=True)))
    assert float(np.mean(rhos)) < 0.5, rhos


def test_xrai_through_the_engine(lite0):
    """A RESULT whose regions are XRAI's (at most ``segments``), with region weights that add
    up like Integrated Gradients, XRAI's map as the saliency pane, curves and region sets."""
    exp = limner.explain(sample_photo("chelsea"), lite0, method="xrai", steps=2, segments=12)
    d = exp.to_dict()
    assert d["method"] == "xrai" and d["segmentation"]["algorithm"] == "xrai"
    assert exp.settings()["segmentation"] == "xrai" and d["steps"] == 2
    c = d["explanations"][0]
    m = d["segmentation"]["count"]
    assert 2 <= m <= 12 and c["total_features"] == m
    assert c["settled"] is None and all(r["interval"] is None for r in c["regions"])
    assert set(c["images"]) == {"positive", "negative", "heatmap", "regions", "saliency", "labels"}
    assert 0.0 <= c["deletion_auc"] <= 1.0 and 0.0 <= c["insertion_auc"] <= 1.0
    assert c["sufficient_regions"] is not None
    # efficiency carries over from Integrated Gradients (within its completeness gap)
    delta = c["probability"] - c["intercept"]
    total = sum(r["weight"] for r in c["regions"])
    assert abs(total - delta) == pytest.approx(
        c["completeness_gap"] * max(abs(delta), 0.01), abs=1e-4
    )
    # the saliency map is XRAI's: each region's weight spread evenly over its pixels, ranked
    # by that density in id order (the merged remainder, if any, last)
    labels = exp.regions.at_size(*lite0.input_size)
    sal = exp.saliency[c["class_index"]]
    weights = exp.classes[0].weights
    areas = np.bincount(labels.ravel(), minlength=m)
    np.testing.assert_allclose(sal, (weights / areas)[labels], rtol=1e-6, atol=1e-12)
    density = weights / areas
    assert all(density[i] >= density[i + 1] - 1e-12 for i in range(m - 2))
    # the saliency pane draws at the original size
    assert exp.pane(c["class_index"], "saliency").shape[:2] == (d["height"], d["width"])


def test_xrai_on_given_regions_ranks_them():
    """With a region map given (a comparison on shared regions), XRAI keeps those regions and
    ranks them by gain density."""
    from limner.explain.segmentation import region_map

    model = torch_brightness()
    image = patch_image()
    regions = region_map(image, "grid", 16)
    exp = limner.explain(image, model, method="xrai", regions=regions, steps=8)
    assert exp.regions is regions and exp.to_dict()["segmentation"]["algorithm"] == "grid"
    assert len(exp.classes[0].weights) == 16


def test_xrai_finds_the_known_patch():
    """On a model that reads only the top-left quarter, XRAI's first region lies in it."""
    exp = limner.explain(patch_image(), torch_brightness(), method="xrai", classes=["bright"])
    first = exp.regions.labels == 0  # at the model's 64×64 input
    inside = first[:32, :32].sum() / first.sum()
    assert inside > 0.85, inside  # the patch, and the rim its dilation adds
    assert exp.classes[0].weights[0] > 0


def test_an_onnx_model_gets_a_clear_error(tmp_path: Path):
    """ONNX Runtime gives no gradients: one line naming the methods it can use."""
    torch.onnx.export(
        Brightness(),
        torch.zeros(1, 3, 64, 64),
        str(tmp_path / "model.onnx"),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    model = limner.load_model(tmp_path / "model.onnx", metadata=brightness_meta(), device="cpu")
    with pytest.raises(InvalidInputError) as err:
        limner.explain(patch_image(), model, method="xrai")
    msg = str(err.value)
    assert "xrai needs gradients" in msg and "kernelshap, lime, occlusion, rise" in msg
    assert "\n" not in msg
