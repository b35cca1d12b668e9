"""A detector limner trains on its generated scenes (``limner.training.scene_detector``),
exported to ONNX with a raw YOLO-style head and read by limner's ONNX detector: it finds the
held-out scenes' objects, the pointing game holds on its explanations, and the same game on
the network with its weights randomized fails (the check discriminates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from limner.datasets.scenes import mask_box, scene
from limner.explain.detection import box_target, explain_detection, pick_target
from limner.models.detection import Detector, iou
from limner.models.detector_formats import torch_detector
from limner.models.metadata import read_metadata_dict
from limner.models.onnx_detector import load_onnx_detector
from limner.training.scene_detector import (
    SceneNet,
    randomized,
    save_onnx_detector,
    scene_detector_metadata,
    train_scene_detector,
)

#: Held-out scenes: the detector trains on seeds 0..1199.
HELD_OUT = range(20_000, 20_050)


def _load(folder: Path) -> Detector:
    return load_onnx_detector(
        folder / "model.onnx", read_metadata_dict(folder / "limner-model.json")
    )


@pytest.fixture(scope="module")
def nets() -> tuple[SceneNet, SceneNet]:
    """The trained network and the same network with its weights drawn afresh."""
    net = train_scene_detector()
    return net, randomized(net, seed=1)


@pytest.fixture(scope="module")
def trained(
    nets: tuple[SceneNet, SceneNet], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Detector, Detector]:
    """The trained detector and the randomized one (its threshold at 0, so that it always has
    a best box to explain), exported to ONNX."""
    net, blind_net = nets
    root = tmp_path_factory.mktemp("scene-detector")
    good = _load(save_onnx_detector(net, root / "trained"))
    blind = _load(save_onnx_detector(blind_net, root / "random", score_threshold=0))
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
    passed, scored, _ = _pointing(detector, HELD_OUT)
    print(f"pointing game, trained: {passed}/{scored} scenes")
    assert scored >= 45 and passed >= 0.9 * scored, (passed, scored)
    pointed = _pointing_anywhere(blind, HELD_OUT[:20])
    print(f"pointing game, random weights: {pointed}/20 scenes")
    assert pointed <= 0.4 * 20, pointed  # far below the bar, not merely under it


def _pointing(detector: Detector, seeds: range, **settings: object) -> tuple[int, int, list]:
    """Scenes where every true-positive box's top region lies on its object, scenes with a
    true-positive box, and the explanations."""
    passed = scored = 0
    explained = []
    for seed in seeds:
        img, objects = scene(seed)
        d = detector.detect(img[None])[0]
        hits = []
        for i in range(len(d)):
            on = [m for c, m in objects if c == d.labels[i] and _overlaps(d.boxes[i], m)]
            if on:
                exp = explain_detection(img, detector, box=i, **{"seed": seed, **settings})
                explained.append(exp)
                hits.append(_top_on(exp, on[0]))
        if hits:
            scored += 1
            passed += all(hits)
    return passed, scored, explained


def _pointing_anywhere(detector: Detector, seeds: range, **settings: object) -> int:
    """Scenes where the best box's top region lies on any object."""
    pointed = 0
    for seed in seeds:
        img, objects = scene(seed)
        anywhere = np.any([m for _, m in objects], axis=0)
        pointed += _top_on(explain_detection(img, detector, seed=seed, **settings), anywhere)
    return pointed


def _overlaps(box: np.ndarray, mask: np.ndarray) -> bool:
    return float(iou(mask_box(mask), box[None])[0]) > 0.5


def _top_on(exp, mask: np.ndarray) -> bool:
    labels = exp.explanation.regions.labels
    top = int(np.argmax(exp.explanation.classes[0].weights))
    return bool(((labels == top) & mask).any())


def test_the_box_score_in_torch_is_the_black_box_score_at_the_image(nets):
    """The gradient methods' box score (every candidate of the head, in torch) is the number
    the black-box target gives, at each held-out image, for each of its detections."""
    detector = torch_detector(nets[0], scene_detector_metadata())
    compared = 0
    for seed in HELD_OUT[:10]:
        img = scene(seed)[0]
        found = detector.detect(img[None])[0]
        for i in range(len(found)):
            model = box_target(detector, pick_target(found, len(detector.labels), box=i))
            forward = model.torch_forward()
            assert forward is not None
            with torch.no_grad():
                p = forward.probabilities(torch.from_numpy(img[None].astype(np.float32)))
            assert float(p[0, 0]) == pytest.approx(float(model.predict(img[None])[0, 0]), abs=1e-5)
            compared += 1
    assert compared >= 10


def test_integrated_gradients_point_at_the_box_and_not_with_random_weights(nets):
    """Integrated Gradients of the box score, through the detector's module, summed per region:
    the top region lies on the object for at least 75% of 20 held-out scenes' true-positive
    boxes (16 to 20 of 20 across training runs: the detector trains differently from run to
    run), the attributions add up to the score (completeness); the randomized network's best
    box, explained the same way on 12 scenes, points at an object far less often (0 of 20 when
    it ran on 20 scenes)."""
    net, blind_net = nets
    detector = torch_detector(net, scene_detector_metadata())
    blind = torch_detector(blind_net, scene_detector_metadata(score_threshold=0))
    method = "integrated-gradients"
    passed, scored, explained = _pointing(detector, HELD_OUT[:20], method=method)
    gaps = [e.explanation.completeness[0] for e in explained]
    print(f"pointing game, integrated gradients: {passed}/{scored} scenes; gaps {max(gaps)}")
    assert scored >= 18 and passed >= 0.75 * scored, (passed, scored)
    assert np.median(gaps) <= 0.01, gaps
    pointed = _pointing_anywhere(blind, HELD_OUT[:12], method=method)
    print(f"pointing game, integrated gradients, random weights: {pointed}/12 scenes")
    assert pointed <= 0.4 * 12, pointed


def test_gradcam_explains_the_boxes_of_the_pytorch_module(nets):
    """Grad-CAM hooks a layer of the module (an in-memory module's layers can be hooked), here
    the backbone's last feature map, named (the last spatial layer, Grad-CAM's default, is the
    size head's): the best box's top region lies on its object in at least 7 of 10 scenes
    (Grad-CAM's map has a quarter of the image's resolution)."""
    detector = torch_detector(nets[0], scene_detector_metadata())
    hits = scored = 0
    for seed in HELD_OUT[:10]:
        img, objects = scene(seed)
        d = detector.detect(img[None])[0]
        on = [m for c, m in objects if len(d) and c == d.labels[0] and _overlaps(d.boxes[0], m)]
        if on:
            exp = explain_detection(img, detector, box=0, method="gradcam", layer="body.9")
            assert exp.explanation.layer
            scored += 1
            hits += _top_on(exp, on[0])
    print(f"pointing game, gradcam: {hits}/{scored}")
    assert scored >= 9 and hits >= 0.7 * scored, (hits, scored)
