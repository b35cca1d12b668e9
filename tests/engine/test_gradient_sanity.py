"""Gradient methods on the built-in model: completeness and memory of Integrated Gradients, and
the model-randomization sanity check of Adebayo et al. (NeurIPS 2018) for both methods."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from limner.explain.methods.gradients import GradientAttributor
from limner.explain.perturb import baseline_image
from limner.imaging import resize
from limner.models.gradients import module_forward
from limner.models.zoo import efficientnet_lite0_metadata, efficientnet_lite0_module
from limner.samples import SAMPLE_PHOTOS, sample_photo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

_RUN_IG = """
import json, resource, sys
import limner
from limner.samples import sample_photo
model = limner.load_model("efficientnet-lite0", device="cpu")
exp = limner.explain(sample_photo("chelsea"), model, method="integrated-gradients", steps=64)
d = exp.to_dict()
c = d["explanations"][0]
print(json.dumps({
    "steps": d["steps"], "gap": c["completeness_gap"], "probability": c["probability"],
    "intercept": c["intercept"], "total": sum(r["weight"] for r in c["regions"]),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def test_integrated_gradients_is_complete_and_stays_within_2_gb():
    """IG on a 224×224 input with 64 steps, in a fresh process whose peak memory is measured."""
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_IG], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["steps"] == 64
    delta = out["probability"] - out["intercept"]
    assert abs(delta) > 0.1
    assert out["gap"] < 0.01
    assert abs(out["total"] - delta) <= 0.01 * abs(delta)
    assert out["peak_mb"] < 2048, out


def cascading_randomization(module: Any, seed: int = 0) -> Iterator[tuple[str, Any]]:
    """Copies of ``module`` with the weights re-initialized layer by layer from the top (the
    classifier) down to the input, as in Adebayo et al.; yields (layer name, model so far)."""
    torch.manual_seed(seed)
    model = copy.deepcopy(module)
    layers = [(n, m) for n, m in model.named_modules() if hasattr(m, "reset_parameters")]
    for name, layer in reversed(layers):
        layer.reset_parameters()
        yield name, model


def _fully_randomized(module: Any) -> Any:
    stages = list(cascading_randomization(module))
    return stages[-1][1]


@pytest.fixture(scope="module")
def networks() -> tuple[Any, Any]:
    meta = efficientnet_lite0_metadata()
    original = efficientnet_lite0_module()
    cpu = torch.device("cpu")
    randomized = _fully_randomized(original)
    return module_forward(original, meta, cpu), module_forward(randomized, meta, cpu)


@pytest.mark.parametrize("method", ["integrated-gradients", "gradcam"])
def test_randomizing_the_weights_changes_the_map(networks, method):
    """Spearman rank correlation of |map| between the trained and the fully randomized network,
    averaged over the bundled photos, is below 0.5 (each photo's top class)."""
    original, randomized = networks
    steps = 16 if method == "integrated-gradients" else None
    rhos = []
    for name in SAMPLE_PHOTOS:
        image = resize(sample_photo(name), 224, 224)
        base = baseline_image(image, np.zeros((224, 224), np.int32), "blur")
        with torch.no_grad():
            x = torch.from_numpy(image[None].astype(np.float32))
            c = int(original.probabilities(x).argmax())
        a = GradientAttributor(method, original, steps=steps).attribute(image, base, c).pixels
        b = GradientAttributor(method, randomized, steps=steps).attribute(image, base, c).pixels
        assert np.abs(a).sum() > 0
        rhos.append(float(spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0]))
    assert float(np.mean(rhos)) < 0.5, rhos
