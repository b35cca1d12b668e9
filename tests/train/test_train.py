"""``limner train``: the model directory, its accuracy, and clear errors for bad layouts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import limner
from limner.errors import InvalidInputError
from limner.training import train


def test_model_directory_and_accuracy(trained_dir: Path, shapes_dir: Path) -> None:
    for name in ("model.onnx", "limner-model.json", "metrics.json", "confusion_matrix.png"):
        assert (trained_dir / name).is_file(), name
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    assert metrics["validation_accuracy"] >= 0.95
    assert metrics["validation_images"] == 80 and metrics["train_images"] == 320
    assert len(metrics["history"]) == metrics["epochs"]
    assert {"train_accuracy", "validation_accuracy"} <= set(metrics["history"][0])
    assert np.asarray(metrics["confusion_matrix"]).sum() == 80
    meta = json.loads((trained_dir / "limner-model.json").read_text())
    assert meta["labels"] == ["circle", "square"] and meta["problem_type"] == "binary"
    assert (meta["input"]["width"], meta["input"]["height"]) == (96, 96)

    model = limner.load_model(trained_dir)
    assert model.labels == ["circle", "square"]
    image = limner.imaging.read_image(shapes_dir / "validation" / "square" / "square_0199.png")
    probs = model.predict(image[None])
    assert probs.shape == (1, 2) and probs[0, 1] > 0.5


def _layout(root: Path, classes: dict[str, int], splits=("train", "validation")) -> Path:
    from PIL import Image

    for split in splits:
        for name, n in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(folder / f"{i}.png")
    return root


def test_bad_layouts_name_the_folder(tmp_path: Path) -> None:
    no_val = _layout(tmp_path / "a", {"x": 2, "y": 2}, splits=("train",))
    with pytest.raises(InvalidInputError, match=r"a/validation: folder not found"):
        train(no_val, tmp_path / "out")
    one = _layout(tmp_path / "b", {"x": 2})
    with pytest.raises(InvalidInputError, match=r"b/train: found 1 class folder"):
        train(one, tmp_path / "out")
    empty = _layout(tmp_path / "c", {"x": 2, "y": 0})
    with pytest.raises(InvalidInputError, match=r"c/train/y: class folder has no images"):
        train(empty, tmp_path / "out")
    stray = _layout(tmp_path / "d", {"x": 2, "y": 2})
    (stray / "validation" / "y" / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match=r"d/validation/y: notes.txt is not an image"):
        train(stray, tmp_path / "out")
    broken = _layout(tmp_path / "e", {"x": 2, "y": 2})
    (broken / "train" / "x" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InvalidInputError, match=r"e/train/x/bad.png: not a readable image"):
        train(broken, tmp_path / "out", image_size=32)
    with pytest.raises(InvalidInputError, match="unknown architecture"):
        train(stray, tmp_path / "out", arch="resnet-900")


def test_cli_bad_layout_exit_2_one_line(tmp_path: Path) -> None:
    data = _layout(tmp_path / "data", {"x": 2, "y": 2}, splits=("train",))
    proc = subprocess.run(
        [sys.executable, "-m", "limner.cli.main", "train", str(data), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "validation" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_small_cnn_multiclass_and_torchscript(tmp_path: Path) -> None:
    """``--arch small-cnn`` on three classes; the trained network scripted to a ``.pt`` file
    loads through ``limner.load_model`` and explains."""
    from limner.datasets import make_shapes

    data = tmp_path / "tri"
    make_shapes(data, per_class=24, size=48, classes=["circle", "square", "triangle"])
    result = train(data, tmp_path / "cnn", arch="small-cnn", epochs=2, image_size=48)
    assert result.metadata.problem_type == "multiclass"
    assert 0.0 <= result.validation_accuracy <= 1.0
    assert len(result.metrics["history"]) == 2

    import torch

    scripted = torch.jit.script(result.module)
    pt = tmp_path / "scripted" / "shapes.pt"
    pt.parent.mkdir()
    scripted.save(str(pt))
    shutil.copy(tmp_path / "cnn" / "limner-model.json", pt.parent / "limner-model.json")
    model = limner.load_model(pt, device="cpu")
    onnx = limner.load_model(tmp_path / "cnn", device="cpu")
    image = limner.imaging.read_image(next((data / "validation" / "square").glob("*.png")))
    np.testing.assert_allclose(model.predict(image[None]), onnx.predict(image[None]), atol=1e-4)
    d = limner.explain(image, model, samples=64, segments=9, segmentation="grid").to_dict()
    assert d["explanations"][0]["label"] in model.labels
    assert len(d["explanations"][0]["regions"]) == 9
