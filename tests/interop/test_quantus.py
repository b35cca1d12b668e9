"""Quantus evaluates limner's methods through ``limner.quantus.explain_func`` (one line), on the
built-in network's public torch module and two bundled photos."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from torch import nn

import limner
import limner.quantus
from limner.errors import InvalidInputError
from limner.imaging import resize
from limner.models import InputSpec, ModelMetadata, builtin_torch_module
from limner.samples import sample_photo

#: Quick settings: 8 grid regions, 64 samples.
FAST = {"samples": 64, "segmentation": "grid", "segments": 8, "baseline": "gray"}
PHOTOS = ("chelsea", "coffee")


@pytest.fixture(scope="module")
def net():
    return builtin_torch_module()


@pytest.fixture(scope="module")
def batch(net) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB photos at the model's size, their model inputs and the predicted classes."""
    rgb = np.stack([resize(sample_photo(n), *net.input_size) for n in PHOTOS])
    x = net.preprocess(rgb)
    with torch.no_grad():
        y = net.module(torch.from_numpy(x)).argmax(1).numpy()
    return rgb, x, y


@pytest.fixture(scope="module")
def maps(net, batch) -> dict[str, np.ndarray]:
    """explain_func's attributions of the batch, by the default method and by Grad-CAM."""
    _, x, y = batch
    return {
        "default method": limner.quantus.explain_func(net.module, x, y, **FAST),
        "gradcam": limner.quantus.explain_func(net.module, x, y, method="gradcam"),
    }


def test_the_builtin_module_is_the_builtin_model(net, batch, lite0) -> None:
    rgb, x, y = batch
    assert isinstance(net.module, nn.Module) and not net.module.training
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    assert np.array_equal(net.to_rgb(x), rgb)  # (pixel - 127) / 128, inverted exactly
    with torch.no_grad():
        p = torch.softmax(net.module(torch.from_numpy(x)), 1).numpy()
    assert np.allclose(p, lite0.predict(rgb), atol=1e-3)
    assert [net.labels[i] for i in y] == ["Egyptian cat", "espresso"]
    assert np.array_equal(net.preprocess(sample_photo("coffee")), x[1:])  # resized as limner does


@pytest.mark.parametrize(
    "settings", [FAST, {"method": "gradcam"}], ids=["default method", "gradcam"]
)
def test_quantus_scores_limner_methods(net, batch, maps, settings: dict) -> None:
    _, x, y = batch
    faithfulness = quantus.FaithfulnessCorrelation(
        nr_runs=5, subset_size=224 * 8, disable_warnings=True, display_progressbar=False
    )
    a = maps["gradcam" if "method" in settings else "default method"]
    scores = faithfulness(
        model=net.module, x_batch=x, y_batch=y, a_batch=a, explain_func=limner.quantus.explain_func,
        explain_func_kwargs=dict(settings), device="cpu",
    )  # fmt: skip
    randomisation = quantus.RandomLogit(
        num_classes=1000, seed=0, disable_warnings=True, display_progressbar=False
    )
    logit = randomisation(
        model=net.module, x_batch=x, y_batch=y, a_batch=a, explain_func=limner.quantus.explain_func,
        explain_func_kwargs=dict(settings), device="cpu",  # Quantus adds its device to the dict
    )  # fmt: skip
    assert len(scores) >= 1 and np.isfinite(scores).all()
    assert len(logit) == 2 and np.isfinite(logit).all()


def test_explain_func_gives_limners_maps_in_quantus_shapes(net, batch, maps, lite0) -> None:
    rgb, x, y = batch
    a = maps["default method"]
    assert maps["gradcam"].shape == a.shape and np.ptp(maps["gradcam"][0]) > 0
    assert a.shape == (2, 1, 224, 224) and a.dtype == np.float32
    for i in range(2):
        exp = limner.explain(rgb[i], lite0, classes=[int(y[i])], **FAST)
        assert np.allclose(a[i, 0], exp.attribution_map(224, 224, class_index=int(y[i])))
    # channel-last inputs give channel-last maps; a to_rgb of one's own gives the same pixels
    last = limner.quantus.explain_func(None, x[:1].transpose(0, 2, 3, 1), y[:1], **FAST)
    assert last.shape == (1, 224, 224, 1) and np.allclose(last[..., 0], a[:1, 0])
    own = limner.quantus.explain_func(
        net.module, x[:1], int(y[0]), to_rgb=lambda b: b.transpose(0, 2, 3, 1) * 128 + 127, **FAST
    )
    assert np.allclose(own, a[:1])


def test_another_torch_module_is_explained_as_itself(batch) -> None:
    """A module that is not the pristine built-in (say, with randomised layers) is explained as
    Quantus hands it over, with the metadata given."""
    rgb, _, _ = batch
    torch.manual_seed(0)
    tiny = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    )  # fmt: skip
    meta = ModelMetadata(
        labels=["a", "b", "c"],
        input=InputSpec(width=32, height=32, layout="NCHW", scale=1 / 255, mean=(0.5,) * 3),
        output="logits",
    )
    small = np.stack([resize(i, 32, 32) for i in rgb])
    x = (small.astype(np.float32) / 255 - 0.5).transpose(0, 3, 1, 2)
    a = limner.quantus.explain_func(
        tiny, x, np.array([0, 2]), metadata=meta, method="integrated-gradients", segments=4,
        segmentation="grid",
    )  # fmt: skip
    assert a.shape == (2, 1, 32, 32) and np.isfinite(a).all() and np.ptp(a[0]) > 0


def test_explain_func_refuses_what_it_cannot_use(net, batch) -> None:
    _, x, y = batch
    with pytest.raises(InvalidInputError, match="nr_samples"):
        limner.quantus.explain_func(net.module, x, y, nr_samples=4)
    with pytest.raises(InvalidInputError, match=r"torch\.nn\.Module or a limner Model"):
        limner.quantus.explain_func(object(), x, y)
    with pytest.raises(InvalidInputError, match="batch of images"):
        limner.quantus.explain_func(net.module, x[0], y)
    with pytest.raises(InvalidInputError, match="one per input"):
        limner.quantus.explain_func(net.module, x, [1, 2, 3])
