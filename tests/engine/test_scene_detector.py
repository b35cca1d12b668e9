"""A detector limner trains on its generated scenes (``limner.training.scene_detector``),
exported to ONNX with a raw YOLO-style head and read by limner's ONNX detector: it finds the
held-out scenes' objects, the pointing game holds on its explanations, and the same game on
the network with its weights randomized fails (the check discriminates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from limner.datasets.scenes import mask_box, scene
from limner.explain.detection import explain_detection
from limner.models.detection import Detector, iou
from limner.models.metadata import read_metadata_dict
from limner.models.onnx_detector import load_onnx_detector
from limner.training.scene_detector import randomized, save_onnx_detector, train_scene_detector

#: Held-out scenes: the detector trains on seeds 0..1199.
HELD_OUT = range(20_000, 20_050)


def _load(folder: Path) -> Detector:
    return load_onnx_detector(
        folder / "model.onnx", read_metadata_dict(folder / "limner-model.json")
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Detector, Detector]:
    """The trained detector and the same network with its weights drawn afresh (its threshold
    at 0, so that it always has a best box to explain)."""
    net = train_scene_detector()
    root = tmp_path_factory.mktemp("scene-detector")
    good = _load(save_onnx_detector(net, root / "trained"))
    blind = _load(save_onnx_detector(randomized(net, seed=1), root / "random", score_threshold=0))
    return good, blind


def test_the_trained_detector_finds_the_held_out_objects(trained: tuple[Detector, Detector]):
    detector, _ = trained
    found = missed = wrong = 0
    for seed in HELD_OUT:
        img, objects = scene(seed)
        d = detector.detect(img[None])[0]
        matched = set()
        for i in range(len(d)):
            ious = [
                float(iou(mask_box(m), d.boxes[i][None])[0]) if c == d.labels[i] else 0.0
                for c, m in objects
            ]
            if max(ious) > 0.5:
                matched.add(int(np.argmax(ious)))
            else:
                wrong += 1
        found += len(matched)
        missed += len(objects) - len(matched)
    assert found >= 0.9 * (found + missed), (found, missed)
    assert wrong <= 0.1 * found, wrong


def test_pointing_game_holds_for_the_trained_detector_and_fails_with_random_weights(
    trained: tuple[Detector, Detector],
):
    """For each held-out scene, every true-positive box's top-weighted region lies on that
    object (at least 90% of the scenes); the randomized network's best box, explained the same
    way, points at an object far less often."""
    detector, blind = trained
    passed = scored = 0
    for seed in HELD_OUT:
        img, objects = scene(seed)
        d = detector.detect(img[None])[0]
        hits = []
        for i in range(len(d)):
            on = [m for c, m in objects if c == d.labels[i] and _overlaps(d.boxes[i], m)]
            if on:
                hits.append(_top_on(explain_detection(img, detector, box=i, seed=seed), on[0]))
        if hits:
            scored += 1
            passed += all(hits)
    print(f"pointing game, trained: {passed}/{scored} scenes")
    assert scored >= 45 and passed >= 0.9 * scored, (passed, scored)

    pointed = 0
    for seed in HELD_OUT[:20]:
        img, objects = scene(seed)
        anywhere = np.any([m for _, m in objects], axis=0)
        pointed += _top_on(explain_detection(img, blind, seed=seed), anywhere)
    print(f"pointing game, random weights: {pointed}/20 scenes")
    assert pointed < 0.9 * 20 * 0.75, pointed  # far below the bar, not merely under it


def _overlaps(box: np.ndarray, mask: np.ndarray) -> bool:
    return float(iou(mask_box(mask), box[None])[0]) > 0.5


def _top_on(exp, mask: np.ndarray) -> bool:
    labels = exp.explanation.regions.labels
    top = int(np.argmax(exp.explanation.classes[0].weights))
    return bool(((labels == top) & mask).any())
