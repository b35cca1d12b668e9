"""Fixtures of the training tests: one shapes data set and one trained model per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from limner.datasets import make_shapes


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes (circle, square), 200 images a class at 96×96, with masks."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, per_class=200, size=96, classes=["circle", "square"], seed=0)
    return root


@pytest.fixture(scope="session")
def trained_dir(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``limner train`` run as a user runs it (a separate process), with its wall time printed."""
    out = tmp_path_factory.mktemp("model") / "shapes-model"
    cmd = [sys.executable, "-m", "limner.cli.main", "train", str(shapes_dir), "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    print(
        f"\n[benchmark] limner train {shapes_dir.name} (400 images, 96×96): {seconds:.1f} s wall, "
        f"{metrics['seconds']['total']:.1f} s in train(); validation accuracy "
        f"{metrics['validation_accuracy']:.3f}"
    )
    return out


@pytest.fixture(scope="session")
def keras_model(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classic Keras tutorial CNN (Rescaling, three conv blocks, two-way softmax) at 90×90,
    trained briefly on a part of the shapes data and saved as ``.keras``."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    import numpy as np

    from limner.training import load_image_folder

    data = load_image_folder(shapes_dir, 90)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(data.train))[:96]
    model = keras.Sequential(
        [
            keras.Input((90, 90, 3)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        data.train.images[pick].astype("float32"),
        data.train.labels[pick],
        epochs=2,
        batch_size=32,
        verbose=0,
    )
    path = tmp_path_factory.mktemp("keras") / "shapes_cnn.keras"
    model.save(path)
    return path
