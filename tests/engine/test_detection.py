"""Explaining one detection: D-RISE's map, the RESULT's detection field, box formats, NMS and
the one-line errors for bad detector output (the pointing game is in test_scene_detector.py, on
a detector limner trains)."""

from __future__ import annotations

import numpy as np
import pytest

from limner.datasets.scenes import SCENE_LABELS, colour_detector, scene
from limner.errors import InvalidInputError
from limner.explain.detection import drise_map, explain_detection, pick_target
from limner.models.detection import Detections, Detector, iou, nms, to_xyxy

SIZE = 96
LABELS = SCENE_LABELS


def test_drise_peaks_on_the_object():
    """D-RISE's map (random masks weighted by similarity) peaks inside the explained object."""
    detector = colour_detector()
    inside = 0
    for seed in range(6):
        img, objects = scene(seed)
        found = detector.detect(img[None])[0]
        target = pick_target(found, len(LABELS))
        sal = drise_map(img, detector, target, masks_count=400, cells=8, seed=seed)
        y, x = np.unravel_index(int(np.argmax(sal)), sal.shape)
        inside += any(m[y, x] and c == target.label for c, m in objects)
    assert inside >= 5, inside


def test_the_drise_method_puts_the_object_first():
    """``method="drise"`` (D-RISE's masks and weighting, read per region) ranks a region of the
    explained object first; its weights carry intervals from the masks' spread."""
    detector = colour_detector()
    on_object = 0
    for seed in range(5):
        img, objects = scene(seed)
        exp = explain_detection(img, detector, method="drise", samples=300, segments=16, seed=seed)
        item = exp.to_dict()["explanations"][0]
        top = item["regions"][0]
        lo, hi = top["interval"]
        assert lo <= top["weight"] <= hi and hi > lo
        region = exp.explanation.labels_map == top["id"]
        target = objects_of(objects, exp.target.label)
        on_object += bool((region & target).any())
    assert on_object >= 4, on_object


def objects_of(objects: list, label: int) -> np.ndarray:
    """The pixels of every object of class ``label``."""
    return np.any([m for c, m in objects if c == label], axis=0)


def test_the_result_names_the_box_and_every_detection():
    """The RESULT gains ``detection``: the explained box in the photo's pixels (scaled from the
    detector's input), its label and score, and the image's detections."""
    img, objects = scene(3)
    big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)  # the photo at twice the input size
    exp = explain_detection(big, colour_detector(), label="red" if objects[0][0] == 0 else "blue")
    d = exp.to_dict()
    det = d["detection"]
    assert det["box_format"] == "xyxy" and det["label"] in LABELS
    ys, xs = np.nonzero(np.repeat(np.repeat(objects[0][1], 2, axis=0), 2, axis=1))
    truth = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
    boxes = np.array([x["box"] for x in det["detections"]])
    assert float(iou(truth, boxes).max()) > 0.8
    assert d["explanations"][0]["label"].startswith(f"box {det['index']}")
    assert 0 < det["score"] <= 1


def test_box_formats_become_xyxy_pixels():
    xyxy = np.array([[10.0, 20.0, 50.0, 60.0]])
    assert np.allclose(to_xyxy(xyxy, "xyxy", normalized=False, width=100, height=100), xyxy)
    xywh = np.array([[10.0, 20.0, 40.0, 40.0]])
    assert np.allclose(to_xyxy(xywh, "xywh", normalized=False, width=100, height=100), xyxy)
    cxcywh = np.array([[0.3, 0.4, 0.4, 0.4]])
    assert np.allclose(to_xyxy(cxcywh, "cxcywh", normalized=True, width=100, height=100), xyxy)
    with pytest.raises(InvalidInputError, match="box format must be one of"):
        to_xyxy(xyxy, "yxyx", normalized=False, width=1, height=1)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.7])).tolist() == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), threshold=0.9).tolist() == [1, 2, 0]


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ((np.array([[np.nan, 0, 5, 5]]), np.array([0.9]), np.array([0])), "not a finite number"),
        ((np.zeros((2, 4)), np.array([0.9]), np.array([0])), "must match"),
        ((np.zeros((1, 4)), np.array([0.9]), np.array([7])), "class index is outside"),
        ((np.zeros((1, 5)), np.array([0.9]), np.array([0])), "boxes must be (K, 4)"),
    ],
)
def test_bad_detector_output_is_one_line(output: tuple, says: str):
    detector = Detector(lambda images: [output for _ in images], LABELS, (SIZE, SIZE), name="bad")
    with pytest.raises(InvalidInputError) as err:
        explain_detection(scene(0)[0], detector)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_choosing_a_box_that_is_not_there():
    img, _ = scene(1)
    with pytest.raises(InvalidInputError, match=r"the detector found \d+ boxes"):
        explain_detection(img, colour_detector(), box=9)
    empty = Detector(
        lambda images: [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)) for _ in images],
        LABELS,
        (SIZE, SIZE),
    )
    with pytest.raises(InvalidInputError, match="found nothing"):
        explain_detection(img, empty)
    with pytest.raises(InvalidInputError, match="not one of the detector's"):
        explain_detection(img, colour_detector(), label="green")
    with pytest.raises(InvalidInputError, match=r"gradcam needs gradients, and .* exposes none"):
        explain_detection(img, colour_detector(), method="gradcam")
    with pytest.raises(InvalidInputError, match="not 'lime_image'"):
        explain_detection(img, colour_detector(), method="lime_image")


def test_detections_without_class_scores_are_one_hot():
    d = Detections(np.zeros((2, 4)), np.ones(2), np.array([1, 0]))
    assert d.class_vectors(3).tolist() == [[0, 1, 0], [1, 0, 0]]


def test_a_box_given_by_its_corners_is_matched_to_the_detections():
    """``box_xyxy`` with ``label`` explains that box (a ground-truth box, say): the target is
    the given box, scored by the detection that matches it best; a box of no class, or with its
    corners in the wrong order, is a one-line error."""
    img, objects = scene(4)
    label, mask = objects[0]
    ys, xs = np.nonzero(mask)
    truth = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    exp = explain_detection(img, colour_detector(), box_xyxy=truth, label=label, samples=64)
    np.testing.assert_allclose(exp.target.box, truth)
    assert exp.target.label == label and exp.target.score > 0.5  # the detector found it
    with pytest.raises(InvalidInputError, match="needs its class"):
        explain_detection(img, colour_detector(), box_xyxy=truth)
    with pytest.raises(InvalidInputError, match="x0 < x1"):
        explain_detection(img, colour_detector(), box_xyxy=truth[2:] + truth[:2], label=label)
