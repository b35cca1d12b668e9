"""Gradient methods (Integrated Gradients, Grad-CAM): completeness, the known patch, the models
that have no gradients, TorchScript, a tiny transformers ViT, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import limner
from limner.errors import InvalidInputError
from limner.models import InputSpec, ModelMetadata
from limner.models.pytorch import TorchModel
from limner.samples import sample_photo
from patch_models import brightness_model, patch_image, torch_brightness
from tiny_vit import make_vit

GRADIENT = ["integrated-gradients", "gradcam"]
PATCH = {0, 1, 4, 5}  # the 4×4 grid cells covering the top-left quarter


class TinyCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def tiny_meta() -> ModelMetadata:
    return ModelMetadata(
        labels=["a", "b", "c"],
        input=InputSpec(width=32, height=32, layout="NCHW"),
        output="logits",
        name="tiny",
    )


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return patch_image()


@pytest.mark.parametrize("method", GRADIENT)
def test_the_known_patch_comes_first(method, image):
    result = limner.explain(
        image,
        torch_brightness(),
        method=method,
        segmentation="grid",
        segments=16,
        baseline="black",
        classes=["bright"],
    )
    d = result.to_dict()
    exp = d["explanations"][0]
    ranked = [r["id"] for r in exp["regions"]]
    assert set(ranked[:4]) == PATCH, ranked
    assert set(exp["positive_regions"][:4]) == PATCH
    assert Image.fromarray(result.pane(1, "saliency")).size == (128, 128)
    kinds = {"positive", "negative", "heatmap", "regions", "saliency", "labels"}
    assert set(exp["images"]) == kinds
    if method == "integrated-gradients":
        # the model is linear in the pixels: IG is exact, each patch cell is a quarter
        inside = [r["weight"] for r in exp["regions"] if r["id"] in PATCH]
        np.testing.assert_allclose(inside, 0.25, atol=1e-4)
        others = [r["weight"] for r in exp["regions"] if r["id"] not in PATCH]
        assert max(abs(w) for w in others) < 1e-6
        assert exp["completeness_gap"] < 1e-4
        assert d["steps"] == 64 and exp["fit_r2"] > 0.999
    else:
        assert d["layer"] == "conv"


def test_a_model_without_gradients_names_the_methods_it_can_use(image):
    for method in GRADIENT:
        with pytest.raises(InvalidInputError) as err:
            limner.explain(image, brightness_model(), method=method)
        msg = str(err.value)
        assert "needs gradients" in msg and "kernelshap, lime, occlusion, rise" in msg
        assert "\n" not in msg


def test_steps_and_layer_are_checked(image):
    model = TorchModel(TinyCnn(), tiny_meta())
    with pytest.raises(InvalidInputError, match=r"no layer 'nope'; its layers: features, "):
        limner.explain(image, model, method="gradcam", layer="nope")
    with pytest.raises(InvalidInputError, match="gradient methods only"):
        limner.explain(image, model, method="kernelshap", steps=10)
    with pytest.raises(InvalidInputError, match="steps must be"):
        limner.explain(image, model, method="integrated-gradients", steps=1)
    auto = limner.explain(image, model, method="gradcam", segments=8)
    assert auto.layer == "features.3"  # the last spatial feature map
    named = limner.explain(image, model, method="gradcam", layer="features.1", segments=8)
    assert named.layer == "features.1"
    assert not np.allclose(auto.saliency[auto.explained_classes[0]], named.saliency[0])


def test_torchscript_gives_integrated_gradients_not_gradcam(image):
    model = TorchModel(torch.jit.script(TinyCnn()), tiny_meta())
    exp = limner.explain(image, model, method="integrated-gradients", segments=8)
    assert exp.to_dict()["explanations"][0]["completeness_gap"] < 0.01
    with pytest.raises(InvalidInputError, match=r"it can be explained with .*integrated-gradients"):
        limner.explain(image, model, method="gradcam")


def test_integrated_gradients_is_complete_on_a_tiny_transformers_vit(tmp_path: Path):
    model = limner.load_model(
        make_vit(tmp_path / "tiny-vit", ["w", "x", "y", "z"], initializer_range=0.5),
        device="cpu",
    )  # a large initializer_range spreads the logits, so f(image) − f(baseline) is large
    assert model.torch_forward() is not None  # the Hugging Face adapter exposes its gradients
    photo = sample_photo("chelsea")
    exp = limner.explain(photo, model, method="integrated-gradients", baseline="black", top_k=2)
    d = exp.to_dict()
    base = model.predict(np.zeros((1, 32, 32, 3), np.uint8))[0]
    for c in d["explanations"]:
        delta = c["probability"] - float(base[c["class_index"]])
        assert abs(delta) > 0.05  # a real test of completeness, not of a flat model
        total = sum(r["weight"] for r in c["regions"])
        assert c["completeness_gap"] < 0.01
        assert abs(total - delta) <= 0.01 * abs(delta)
        assert abs(c["intercept"] - float(base[c["class_index"]])) < 1e-5
    cam = limner.explain(photo, model, method="gradcam", segments=8)
    assert cam.layer and cam.pane(cam.explained_classes[0], "saliency").shape == photo.shape


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    net = TinyCnn().eval()
    torch.jit.save(torch.jit.script(net), str(d / "tiny.pt"))
    onnx_dir = d / "onnx"
    onnx_dir.mkdir()
    torch.onnx.export(
        net,
        torch.zeros(1, 3, 32, 32),
        str(onnx_dir / "model.onnx"),
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    tiny_meta().write(onnx_dir / "limner-model.json")
    tiny_meta().write(d / "tiny.json")
    Image.fromarray(sample_photo("coffee")).save(d / "coffee.png")
    return d


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "explain", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_gradient_methods(model_files, tmp_path):
    photo = str(model_files / "coffee.png")
    proc = _cli(photo, "--model", str(model_files / "onnx"), "--method", "gradcam")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "kernelshap, lime, occlusion, rise" in line
    proc = _cli(photo, "--model", str(model_files / "tiny.pt"), "--method", "gradcam")
    assert proc.returncode == 2 and "integrated-gradients" in proc.stderr
    out = tmp_path / "out"
    args = ["--model", str(model_files / "tiny.pt"), "--method", "integrated-gradients"]
    proc = _cli(photo, *args, "--steps", "32", "--segments", "8", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["method"] == "integrated-gradients" and result["steps"] == 32
    first = result["explanations"][0]
    assert "completeness_gap" in first
    assert Image.open(first["images"]["saliency"]).size == (result["width"], result["height"])


def test_keras_on_the_torch_backend_gives_integrated_gradients(image):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from limner.models.keras import KerasModel, derive_metadata

    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on another backend in this process")
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model = KerasModel(net, derive_metadata(net, "tiny-keras"))
    exp = limner.explain(image, model, method="integrated-gradients", baseline="black", segments=8)
    c = exp.to_dict()["explanations"][0]
    assert c["completeness_gap"] < 0.01
    # its layers are torch modules: Grad-CAM hooks the last channels-last feature map
    cam = limner.explain(image, model, method="gradcam", segments=8)
    assert cam.layer == "conv2d"


def test_check_method_before_any_work():
    limner.check_method(torch_brightness(), "gradcam")
    limner.check_method(brightness_model(), "occlusion")
    with pytest.raises(InvalidInputError, match="needs gradients"):
        limner.check_method(brightness_model(), "integrated-gradients")
    with pytest.raises(InvalidInputError, match="unknown method"):
        limner.check_method(torch_brightness(), "saliency")
