"""``limner explainer train`` and ``limner explain --method amortized`` as users run them (a
real subprocess, a real ONNX model), and their one-line errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

LIMNER = [sys.executable, "-m", "limner.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LIMNER, *args], capture_output=True, text=True, timeout=300)


def test_an_explainer_is_trained_for_a_model_and_explains_with_it(tmp_path: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
    from sec_helpers import TINY_META, tiny_onnx

    model = tmp_path / "model"
    model.mkdir()
    tiny_onnx(model / "model.onnx")
    (model / "limner-model.json").write_text(json.dumps({**TINY_META, "artifact": "model.onnx"}))
    images = tmp_path / "images" / "some-class"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "explainer"
    done = run("explainer", "train", "--model", str(model), "--images", str(images.parent),
               "--out", str(out), "--epochs", "2", "--pairs", "4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "trained an explainer for" in done.stdout and "held-out error" in done.stdout
    meta = json.loads((out / "limner-explainer.json").read_text())
    digest = hashlib.sha256((model / "model.onnx").read_bytes()).hexdigest()
    assert (
        meta["model"]["sha256"] == digest and meta["training_images"] + meta["heldout_images"] == 24
    )
    assert (out / "explainer.safetensors").is_file()

    panes = tmp_path / "panes"
    explained = run("explain", str(images / "0.png"), "--model", str(model), "--method",
                    "amortized", "--explainer", str(out), "--out", str(panes))  # fmt: skip
    assert explained.returncode == 0, explained.stderr
    result = json.loads(next(panes.rglob("result.json")).read_text())
    assert "amortized" in result and result["method"] in ("amortized", "kernelshap")

    for args, says in (
        (["explain", str(images / "0.png"), "--model", str(model), "--method", "amortized",
          "--explainer", str(tmp_path / "none")], "not an explainer folder"),
        (["explain", str(images / "0.png"), "--model", str(model), "--method", "amortized"],
         "needs explainer="),
        (["explainer", "train", "--model", str(model), "--images", str(tmp_path / "none"),
          "--out", str(tmp_path / "x")], "no such folder"),
        (["explainer", "train", "--model", str(model), "--images", str(images), "--out",
          str(tmp_path / "x"), "--baseline", "mean"], "--baseline must be"),
    ):  # fmt: skip
        failed = run(*args)
        lines = failed.stderr.strip().splitlines()
        assert failed.returncode == 2 and len(lines) == 1 and says in lines[0], failed.stderr


def test_limner_train_with_explainer_trains_both_on_the_same_images(tmp_path: Path):
    from limner.datasets import make_shapes

    make_shapes(tmp_path / "shapes", per_class=8, size=32, classes=["circle", "square"], seed=0)
    out = tmp_path / "model"
    done = run("train", str(tmp_path / "shapes"), "--out", str(out), "--arch", "small-cnn",
               "--epochs", "1", "--explainer")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "trained an explainer for" in done.stdout
    meta = json.loads((out / "explainer" / "limner-explainer.json").read_text())
    train_images = list((tmp_path / "shapes" / "train").rglob("*.png"))
    assert meta["training_images"] + meta["heldout_images"] == len(train_images)
    digest = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert meta["model"]["sha256"] == digest
    explained = run("explain", str(train_images[0]), "--model", str(out), "--method",
                    "amortized", "--explainer", str(out / "explainer"), "--out",
                    str(tmp_path / "panes"))  # fmt: skip
    assert explained.returncode == 0, explained.stderr
