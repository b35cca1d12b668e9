"""The docs stand alone: every RESULT field is documented in docs/result.md, and nothing in the
repository's docs, README or code points at files that are not in it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import limner
from limner.models import InputSpec, ModelMetadata
from patch_models import brightness_model

ROOT = Path(__file__).resolve().parents[2]


def _result() -> dict:
    image = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3)).astype(np.uint8)
    exp = limner.explain(image, brightness_model(32), segmentation="grid", segments=4)
    return exp.to_dict()


def _gradient_results() -> list[dict]:
    """RESULTs of the gradient methods (they add fields of their own) on a tiny torch CNN."""
    import torch
    from torch import nn

    from limner.models.pytorch import TorchModel

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    meta = ModelMetadata(
        labels=["a", "b"],
        input=InputSpec(width=32, height=32, layout="NCHW"),
        output="logits",
        name="tiny",
    )
    model = TorchModel(net, meta)
    image = np.random.default_rng(1).integers(0, 255, size=(48, 48, 3)).astype(np.uint8)
    return [
        limner.explain(image, model, method=m, segmentation="grid", segments=4).to_dict()
        for m in ("integrated-gradients", "gradcam")
    ]


def _amortized_result() -> dict:
    """The RESULT of method ``amortized`` (it adds its own object) with a tiny explainer."""
    from limner.amortized import train_explainer

    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(12)]
    model = brightness_model(32)
    learned = train_explainer(
        model, images, epochs=1, pairs=4, reference_samples=32, calibration_images=3, width=8
    )
    exp = limner.explain(images[0], model, method="amortized", explainer=learned, segments=4)
    return exp.to_dict()


def _keys(value: object, prefix: str = "") -> set[tuple[str, str]]:
    """Every field of a JSON value as (name, ``parent.name``); fields of list items keep the
    list's prefix."""
    out: set[tuple[str, str]] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out |= {(k, f"{prefix}{k}")} | _keys(v, f"{k}.")
    elif isinstance(value, list):
        for item in value:
            out |= _keys(item, prefix)
    return out


def test_every_result_field_is_documented() -> None:
    doc = (ROOT / "docs" / "result.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_.]+)`", doc))
    fields = _keys(_result())
    for extra in [*_gradient_results(), _amortized_result()]:
        fields |= _keys(extra)
    parents = {d.split(".")[0] for d in documented if "." in d}
    missing = sorted(d for b, d in fields if not {b, d} & (documented | parents))
    assert not missing, f"docs/result.md does not describe: {missing}"
    # what is documented as a RESULT field is in the RESULT
    rows = re.findall(r"^\| `([a-z0-9_.]+)`", doc.split("## Model specs")[0], re.M)
    known = {bare for bare, _ in fields} | {dotted for _, dotted in fields}
    assert rows and not [r for r in rows if r not in known]


def test_nothing_points_outside_the_repository() -> None:
    pattern = re.compile(r"SPEC\.md|DESIGN\.md|\.\./shared")
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for folder in ("src", "examples", "benchmarks", "tests"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".ipynb")]
    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in files
        if p != Path(__file__)
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, f"references to files outside the repository: {hits}"
