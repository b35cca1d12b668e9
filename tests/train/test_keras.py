"""Keras 3 ``.keras`` models: load through ``limner.load_model`` and explain end to end."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import limner
from limner.imaging import read_image

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported
pytest.importorskip("keras")


def test_tutorial_cnn_loads_and_explains(keras_model: Path, shapes_dir: Path) -> None:
    model = limner.load_model(keras_model)
    assert model.input_size == (90, 90)
    assert model.labels == ["class_0", "class_1"]
    assert model.problem_type == "binary"
    assert model.metadata.output == "probabilities"
    assert model.metadata.input.layout == "NHWC" and model.metadata.input.scale == 1.0
    image = read_image(next((shapes_dir / "validation" / "circle").glob("*.png")))  # 96×96
    probs = model.predict_images([image])
    assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1.0) < 1e-4
    d = limner.explain(image, model, samples=100, segments=16, seed=0).to_dict()
    assert d["width"] == 96 and d["predictions"][0]["label"] in model.labels
    regions = d["explanations"][0]["regions"]
    assert len(regions) >= 2 and all(set(r) >= {"id", "weight", "share", "bbox"} for r in regions)


def test_metadata_beside_the_file_gives_labels(keras_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shapes.keras"
    shutil.copy(keras_model, copy)
    meta = {
        "labels": ["circle", "square"],
        "input": {"width": 90, "height": 90, "layout": "NHWC", "scale": 1.0},
        "output": "probabilities",
        "problem_type": "binary",
    }
    (tmp_path / "limner-model.json").write_text(json.dumps(meta))
    model = limner.load_model(copy)
    assert model.labels == ["circle", "square"]
    batch = np.zeros((2, 90, 90, 3), np.uint8)
    assert model.predict(batch).shape == (2, 2)


def test_not_a_keras_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(limner.errors.ModelError, match="not a loadable Keras model"):
        limner.load_model(bad)
