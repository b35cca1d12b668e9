"""Hugging Face image-classification directories: a tiny random ViT made here from a config,
saved with ``save_pretrained`` (safetensors), loaded, explained (library, CLI, service)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import limner
import tiny_vit
from limner.errors import ForbiddenError, InvalidInputError, LimnerError, ModelError

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

LABELS = ["cat", "dog", "bird"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def make_vit(folder: Path, *, safe: bool = True) -> Path:
    """The tiny ViT of these tests, with their labels and normalisation."""
    return tiny_vit.make_vit(folder, LABELS, mean=MEAN, std=STD, safe=safe)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_vit(tmp_path_factory.mktemp("hf") / "tiny-vit")


def photo(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_probabilities_equal_transformers_forward(vit_dir: Path) -> None:
    model = limner.load_model(vit_dir, device="cpu")
    assert model.labels == LABELS and model.input_size == (32, 32)
    assert model.metadata.input.mean == tuple(MEAN) and model.metadata.input.std == tuple(STD)
    images = np.stack([photo(seed=i) for i in range(3)])
    processor = transformers.ViTImageProcessor.from_pretrained(vit_dir)
    pixel_values = processor(images=list(images), return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(model.preprocess(images), pixel_values.numpy(), atol=1e-6)
    reference = transformers.ViTForImageClassification.from_pretrained(vit_dir).eval()
    with torch.inference_mode():
        expected = reference(pixel_values=pixel_values).logits.softmax(-1).numpy()
    np.testing.assert_allclose(model.predict(images), expected, atol=1e-5)
    # the torch module is exposed like a TorchScript module: pixel tensor in, logits out
    with torch.inference_mode():
        logits = model.module(pixel_values)
    np.testing.assert_allclose(logits.softmax(-1).numpy(), expected, atol=1e-5)


def test_explained_by_the_library(vit_dir: Path) -> None:
    model = limner.load_model(str(vit_dir), device="cpu")
    exp = limner.explain(
        photo(64), model, samples=64, segmentation="grid", segments=4, seed=0, baseline="gray"
    )
    entry = exp.to_dict()["explanations"][0]
    assert entry["label"] in LABELS and len(entry["regions"]) == 4


@pytest.mark.slow
def test_explained_by_the_cli(vit_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.fromarray(photo(48)).save(image)
    proc = subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "explain", str(image), "--model", str(vit_dir),
         "--samples", "32", "--segmentation", "grid", "--segments", "4", "--out",
         str(tmp_path / "out"), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["explanations"][0]["label"] in LABELS


def test_pickled_weights_are_refused(vit_dir: Path, tmp_path: Path) -> None:
    from limner.models.huggingface import check_directory, detect_format

    folder = make_vit(tmp_path / "pickled", safe=False)
    with pytest.raises(ModelError, match="pickled weights"):
        limner.load_model(folder, device="cpu")
    # the check a tenant's upload gets before anything is loaded
    assert detect_format(vit_dir) == detect_format(folder) == "huggingface"
    check_directory(vit_dir)
    with pytest.raises(ForbiddenError, match="only pickled weights") as refused:
        check_directory(folder)
    assert str(tmp_path) not in str(refused.value)  # the directory's name, not where it lies


def test_custom_code_and_timm_are_refused(vit_dir: Path, tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    custom.mkdir()
    config = json.loads((vit_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.Evil"}
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "model.safetensors").write_bytes((vit_dir / "model.safetensors").read_bytes())
    with pytest.raises(ModelError, match="never runs code"):
        limner.load_model(custom, device="cpu")
    timm_dir = tmp_path / "timm"
    timm_dir.mkdir()
    (timm_dir / "config.json").write_text(
        json.dumps({"architecture": "resnet18", "num_classes": 3, "pretrained_cfg": {}})
    )
    with pytest.raises(ModelError, match="timm models are not supported"):
        limner.load_model(timm_dir, device="cpu")
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text((vit_dir / "config.json").read_text())
    with pytest.raises(InvalidInputError, match=r"no model\.safetensors"):
        limner.load_model(empty, device="cpu")


# --- through the service: a tenant uploads the directory as a .zip ---------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from limner.settings import Settings
    from service.svc_helpers import running

    data_dir = tmp_path_factory.mktemp("hf-svc")
    with running(Settings(data_dir=data_dir, database_url="", workers=2)) as r:
        yield r


def zipped(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.iterdir()):
            z.write(path, f"{folder.name}/{path.name}")
    return archive


@pytest.mark.slow
def test_tenant_uploads_scores_and_explains(service, vit_dir: Path, tmp_path: Path) -> None:
    from limner.imaging import encode_png
    from service.svc_helpers import FAST

    image = photo(32, seed=7)
    with service.client(service.new_key("hf-tenant")) as client:
        dep = client.deployments.create(name="vit", file=zipped(vit_dir, tmp_path / "vit.zip"))
        assert dep.data["num_classes"] == 3 and dep.data["input_size"] == [32, 32]
        sub = client.subscriptions.create(deployment_id=dep.id)
        sub.enable_explainability(method="kernelshap", **FAST)
        scored = client.score(dep, encode_png(image))
        expected = limner.load_model(vit_dir, device="cpu").predict(image[None])[0]
        got = [scored.probabilities[label] for label in LABELS]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        exp = client.explanations.create(scored.scoring_id).wait(timeout=120)
        assert exp.result["explanations"][0]["regions"]


def test_pickled_upload_is_refused(service, tmp_path: Path) -> None:
    folder = make_vit(tmp_path / "pickled-vit", safe=False)
    with (
        service.client(service.new_key("hf-pickle")) as client,
        pytest.raises(ForbiddenError, match="only pickled weights"),
    ):
        client.deployments.create(name="pickled", file=zipped(folder, tmp_path / "p.zip"))


def test_uploaded_custom_code_never_runs(service, vit_dir: Path, tmp_path: Path) -> None:
    """A tenant's zip whose config.json names its own modeling code (``auto_map``) is refused,
    and the code it carries never runs (its canary file never appears)."""
    folder = tmp_path / "evil-vit"
    folder.mkdir()
    for path in vit_dir.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((vit_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    canary = tmp_path / "code-ran"
    (folder / "modeling_evil.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\n")
    with (
        service.client(service.new_key("hf-custom-code")) as client,
        pytest.raises(LimnerError, match="never runs code") as refused,
    ):
        client.deployments.create(name="evil", file=zipped(folder, tmp_path / "evil.zip"))
    assert 400 <= refused.value.status < 500  # the tenant's mistake, not a server error
    assert not canary.exists()
