"""Method ``amortized`` (experimental): an explainer trained for one model explains in one
forward pass, its RESULT says so, its weights add up to f(image) − f(baseline), its intervals
are conformal; an image its check rejects is explained by the default instead; an explainer
of another model is refused; the artifact is data (no pickle is read)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from limner.amortized import load_explainer, train_explainer
from limner.amortized.calibration import tail_limit
from limner.errors import InvalidInputError
from limner.explain import explain
from limner.models.base import CallableModel
from limner.models.metadata import InputSpec, ModelMetadata

SIDE = 32


def _redness(labels: list[str] = ["red", "not red"]) -> CallableModel:  # noqa: B006
    """P(red) from how much redder than green the left half of the image is."""
    meta = ModelMetadata(
        labels=labels,
        input=InputSpec(width=SIDE, height=SIDE, layout="NHWC", dtype="uint8", scale=1.0),
        output="probabilities",
        problem_type="binary",
    )

    def fn(x: np.ndarray) -> np.ndarray:
        left = x[:, :, : SIDE // 2].astype(np.float64)
        p = 1 / (1 + np.exp(-(left[..., 0] - left[..., 1]).mean(axis=(1, 2)) / 20))
        return np.stack([p, 1 - p], axis=1)

    return CallableModel(fn, meta, name="redness")


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = _redness()
    learned = train_explainer(
        model, _images(40, 0), epochs=3, pairs=8, reference_samples=64, calibration_images=8,
        width=8,
    )  # fmt: skip
    return learned.save(tmp_path_factory.mktemp("explainer"))


def _with_limits(trained: Path, folder: Path, limit: float) -> Path:
    """The trained explainer with its check's limits set to ``limit``."""
    learned = load_explainer(trained)
    for name in ("residual_limit", "gap_limit", "distance_limit"):
        learned.meta["calibration"][name] = limit
    return learned.save(folder)


def test_an_amortized_explanation_is_one_forward_pass_with_conformal_intervals(
    trained: Path, tmp_path: Path
):
    model = _redness()
    image = _images(1, 9)[0]
    lenient = _with_limits(trained, tmp_path / "lenient", 1e9)  # the check accepts any image
    exp = explain(image, model, method="amortized", explainer=lenient, segments=8)
    result = exp.to_dict()
    assert result["method"] == "amortized" and result["stop_reason"] == "amortized"
    info = result["amortized"]
    assert info["outside"] is False and "fallback" not in info
    assert info["check"]["coalitions"] == 8 and info["heldout_error"] >= 0
    c = exp.classes[0]
    base = model.predict(np.asarray(exp.image)[None])  # the photo is at the model's size
    assert c.intercept + c.weights.sum() == pytest.approx(float(base[0, c.class_index]), abs=1e-4)
    width = c.interval[:, 1] - c.interval[:, 0]
    assert np.all(width > 0) and np.allclose(width, width[0])  # one conformal half-width
    # the baseline and the check's coalitions beside the curves: no sampling of the game
    assert result["model_evaluations"] < explain(image, model, segments=8).model_evaluations


def test_an_image_the_check_rejects_is_explained_by_the_default(trained: Path, tmp_path: Path):
    strict = _with_limits(trained, tmp_path / "strict", 0.0)
    exp = explain(_images(1, 5)[0], _redness(), method="amortized", explainer=strict)
    assert exp.method == "kernelshap" and exp.amortized is not None
    assert exp.amortized["fallback"] == "kernelshap" and exp.amortized["outside"] is True
    assert any("outside what the amortized explainer learned" in w for w in exp.classes[0].warnings)


def test_an_image_far_from_the_training_images_features_is_sent_to_the_default(
    trained: Path, tmp_path: Path
):
    """The distance check alone (the coalitions' and the efficiency limits lenient)."""
    learned = load_explainer(trained)
    limits = learned.meta["calibration"]
    limits.update(residual_limit=1e9, gap_limit=1e9, distance_limit=0.0)
    exp = explain(_images(1, 3)[0], _redness(), method="amortized",
                  explainer=learned.save(tmp_path / "near"))  # fmt: skip
    assert exp.method == "kernelshap" and exp.amortized is not None
    assert exp.amortized["check"]["distance"] > 0
    assert any("distance from its training images" in w for w in exp.classes[0].warnings)


def test_an_explainer_of_another_model_or_without_one_is_refused(trained: Path):
    other = _redness(["warm", "cold"])
    with pytest.raises(InvalidInputError, match="trained for another model"):
        explain(_images(1, 1)[0], other, method="amortized", explainer=trained)
    with pytest.raises(InvalidInputError, match="needs explainer="):
        explain(_images(1, 1)[0], _redness(), method="amortized")
    with pytest.raises(InvalidInputError, match="amortized only"):
        explain(_images(1, 1)[0], _redness(), explainer=trained)


class _Trap:
    """A pickle that writes a file when it is loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.path, "ran"))


def test_an_explainer_artifact_is_data_and_a_pickle_is_refused_unread(
    trained: Path, tmp_path: Path
):
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "limner-explainer.json").write_text((trained / "limner-explainer.json").read_text())
    marker = tmp_path / "ran.txt"
    (folder / "explainer.safetensors").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(InvalidInputError, match="not this explainer's weights"):
        load_explainer(folder)
    assert not marker.exists()
    (folder / "limner-explainer.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(InvalidInputError, match="not an explainer's"):
        load_explainer(folder)
    with pytest.raises(InvalidInputError, match="not an explainer folder"):
        load_explainer(tmp_path / "nothing")


def test_an_amortized_explanation_without_curves_costs_its_check_alone(
    trained: Path, tmp_path: Path
):
    model = _redness()
    lenient = _with_limits(trained, tmp_path / "lenient", 1e9)
    image = _images(1, 9)[0]
    lean = explain(image, model, method="amortized", explainer=lenient, segments=8, curves=False)
    full = explain(image, model, method="amortized", explainer=lenient, segments=8)
    # the image, its baseline and the check's coalitions: nothing else
    assert lean.model_evaluations == 2 + lean.to_dict()["amortized"]["check"]["coalitions"]
    assert lean.model_evaluations < full.model_evaluations
    assert np.array_equal(lean.classes[0].weights, full.classes[0].weights)
    assert lean.to_dict()["explanations"][0]["deletion_auc"] is None


def _halves(n: int, seed: int) -> list[np.ndarray]:
    """Images of two flat colours, left and right, with a little noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = np.empty((SIDE, SIDE, 3))
        image[:, : SIDE // 2] = rng.integers(0, 256, 3)
        image[:, SIDE // 2 :] = rng.integers(0, 256, 3)
        out.append(np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8))
    return out


def test_the_explainer_learns_which_half_of_the_image_matters():
    """The redness model reads the left half only: the explainer's weights on the right
    half's cells are a small part of the left half's, on images it did not learn from."""
    model = _redness()
    learned = train_explainer(
        model, _halves(80, 0), epochs=15, pairs=16, reference_samples=64, calibration_images=8,
        baseline="gray",
    )  # fmt: skip
    labels = np.repeat(np.repeat(np.arange(16).reshape(4, 4), SIDE // 4, 0), SIDE // 4, 1)
    left, right = [], []
    for image in _halves(20, 7):
        probs = model.predict(image[None])[0]
        gray = np.full_like(image, 128)
        delta = probs - model.predict(gray[None])[0]
        phi, _, _ = learned.read(image, gray, labels, 16, delta)
        cells = np.abs(phi[0]).reshape(4, 4)
        left.append(cells[:, :2].mean())
        right.append(cells[:, 2:].mean())
    assert np.mean(right) < 0.5 * np.mean(left)


def test_the_backbone_on_onnx_runtime_is_the_pytorch_network():
    import torch

    from limner.amortized.network import BACKBONE_CHANNELS, _taps, backbone_features

    x = torch.rand(2, 6, 40, 56)
    fast = backbone_features(x)
    y = torch.nn.functional.interpolate(x[:, :3], size=(96, 96), mode="bilinear")
    with torch.no_grad():
        slow = _taps()((y * 255 - 127) / 128)
    assert fast.shape == (2, BACKBONE_CHANNELS, 12, 12)
    assert torch.allclose(fast, slow, atol=1e-3 * float(slow.abs().max()))


def test_the_artifact_holds_the_head_alone_and_an_older_explainer_loads(
    trained: Path, tmp_path: Path
):
    from safetensors.torch import load

    from limner.amortized.explainer import explainer_from
    from limner.amortized.network import ExplainerNet

    weights = (trained / "explainer.safetensors").read_bytes()
    assert len(weights) < 2_000_000  # the backbone's weights come from its package
    assert not any(k.startswith("module") for k in load(weights))
    meta = json.loads((trained / "limner-explainer.json").read_text())
    assert meta["backbone"] == "efficientnet-lite0"
    # an explainer saved before the backbone: its small encoder, no "backbone" field
    del meta["backbone"]
    meta["format"] = 1
    old = ExplainerNet(2, meta["width"])
    from safetensors.torch import save

    learned = explainer_from(meta, save(dict(old.state_dict())))
    assert learned.net.backbone is None
    phi, _, _ = learned.read(
        _images(1, 2)[0], np.zeros((SIDE, SIDE, 3), np.uint8),
        np.zeros((SIDE, SIDE), np.int64), 1, np.array([0.3, -0.3]),
    )  # fmt: skip
    assert phi[:, 0] == pytest.approx([0.3, -0.3])


def test_the_checks_limits_keep_familiar_images_and_stay_above_every_heldout_value():
    """A limit fitted to 50 held-out values passes all but about one in 10,000 new values from
    the same distribution (a 99th percentile of 50 would reject about 2%), is never below
    the largest held-out value, and is not stretched by a zero or spoiled by a NaN."""
    rng = np.random.default_rng(0)
    rejected = []
    for _ in range(20):
        heldout = rng.lognormal(0.0, 0.4, 50)
        limit = tail_limit(heldout)
        assert limit >= heldout.max()
        rejected.append(float((rng.lognormal(0.0, 0.4, 20_000) > limit).mean()))
    assert np.mean(rejected) < 2e-3
    assert tail_limit([0.2, 0.9]) == 0.9 and tail_limit([]) == float("inf")
    # one exact zero or a NaN among them does not switch the check off
    values = rng.lognormal(np.log(0.1), 0.3, 49)
    assert tail_limit([*values, 0.0]) < 1.5 * tail_limit(values)
    assert tail_limit([*values, float("nan")]) == tail_limit(values)
    # one far value among the held-out ones: the limit reaches it
    assert tail_limit([*rng.lognormal(0.0, 0.1, 49), 40.0]) >= 40.0


def test_the_head_on_onnx_runtime_reads_as_the_pytorch_network(trained: Path):
    """A read's maps come from the head exported to ONNX Runtime; they are the network's
    (compared region by region, with the head's weights drawn at random so that the maps
    are far from the zero-initialised head's equal shares)."""
    import torch

    from limner.amortized.training import pixels, region_values

    learned = load_explainer(trained)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in [*learned.net.body.parameters(), *learned.net.head.parameters()]:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    image, base = _images(2, 4)
    labels = np.arange(SIDE * SIDE).reshape(SIDE, SIDE) % 8
    delta = np.array([0.3, -0.3])
    assert learned._head is None
    fast, fast_totals, _ = learned.read(image, base, labels, 8, delta)
    assert learned._head not in (None, False)  # the read went through ONNX Runtime
    with torch.no_grad():
        maps = learned.net(pixels(image[None], base[None]))
        slow = region_values(
            maps, torch.from_numpy(labels[None].astype(np.int64)), torch.tensor([8]),
            torch.from_numpy(delta[None].astype(np.float32)), 8,
        )[0].double().numpy()  # fmt: skip
    slow_totals = maps.sum(dim=(2, 3))[0].double().numpy()
    assert np.abs(slow_totals).max() > 1.0  # far from the trained head's small maps
    assert np.allclose(fast, slow, rtol=1e-4, atol=1e-5 * np.abs(slow).max())
    assert np.allclose(fast_totals, slow_totals, rtol=1e-4)


def test_explainers_first_read_at_once_on_several_threads(trained: Path):
    """Each explainer exports its head at its first read; PyTorch's exporter is one per
    process, so reads starting together on several job threads must not collide."""
    import threading

    explainers = [load_explainer(trained) for _ in range(4)]
    image, base = _images(2, 6)
    labels = np.arange(SIDE * SIDE).reshape(SIDE, SIDE) % 8
    start, errors = threading.Barrier(len(explainers)), []

    def first_read(learned) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        try:
            learned.read(image, base, labels, 8, np.array([0.3, -0.3]))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_read, args=(e,)) for e in explainers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
