"""Object detectors of every format: TorchScript and Keras files, a Hugging Face
object-detection directory, and an Open Inference URL (limner's own ``/v2`` serving the built-in
face detector, on loopback) — each read through the same decoder, checked against the same
detector as ONNX or built in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data
from test_onnx_detector import SIZE, GridDetector, meta

from detector_helpers import remote_faces_metadata, tiny_yolos
from limner.datasets.scenes import scene
from limner.errors import InvalidInputError
from limner.models.detectors import detector_metadata_for, load_detector
from limner.models.haar import opencv_faces
from limner.models.onnx_detector import load_onnx_detector

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)
        np.testing.assert_array_equal(x.labels, y.labels)


def test_a_torchscript_detector_answers_as_its_onnx_export(tmp_path: Path):
    images = np.stack([scene(seed)[0] for seed in (3, 4, 5)])
    for raw, detection in ((True, {"layout": "raw", "box_format": "cxcywh"}),
                           (False, {"box_format": "xywh", "normalized": True})):  # fmt: skip
        module = GridDetector(raw).eval()
        traced = torch.jit.trace(module, torch.zeros(1, 3, SIZE, SIZE))
        pt = tmp_path / f"grid-{raw}.pt"
        traced.save(str(pt))
        onnx = tmp_path / f"grid-{raw}.onnx"
        names = ["output0"] if raw else ["boxes", "scores", "labels"]
        torch.onnx.export(
            module, torch.zeros(1, 3, SIZE, SIZE), str(onnx),
            input_names=["images"], output_names=names, dynamo=False,
        )  # fmt: skip
        m = meta(**detection)
        _same(load_detector(str(pt), m).detect(images), load_onnx_detector(onnx, m).detect(images))


def test_a_keras_detector_is_read_by_its_output_names(tmp_path: Path):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    boxes = keras.layers.Dense(4, kernel_initializer="zeros", name="box_dense")(pooled)
    score = keras.layers.Dense(1, activation="sigmoid", name="score_dense")(pooled)
    label = keras.layers.Dense(1, kernel_initializer="zeros", name="label_dense")(pooled)
    model = keras.Model(
        inputs,
        {
            "boxes": keras.layers.Reshape((1, 4), name="boxes")(boxes),
            "scores": keras.layers.Reshape((1,), name="scores")(score),
            "labels": keras.layers.Reshape((1,), name="labels")(label),
        },
    )
    model.get_layer("box_dense").bias.assign(np.array([8.0, 8.0, 40.0, 40.0], np.float32))
    path = tmp_path / "det.keras"
    model.save(path)
    m = meta(box_format="xyxy")
    m["input"] = {"width": SIZE, "height": SIZE, "layout": "NHWC", "scale": 1 / 255}
    found = load_detector(str(path), m).detect(np.stack([scene(1)[0], scene(2)[0]]))
    assert [d.boxes.tolist() for d in found] == [[[8.0, 8.0, 40.0, 40.0]]] * 2
    assert all(d.labels.tolist() == [0] and 0 < d.scores[0] < 1 for d in found)
    bad = {**m, "detection": {"boxes": "corners"}}
    with pytest.raises(InvalidInputError, match="no output 'corners'"):
        load_detector(str(path), bad)


def test_a_hugging_face_detector_directory_is_read_as_a_raw_head(tmp_path: Path):
    pytest.importorskip("transformers")
    folder = tmp_path / "yolos"
    model = tiny_yolos(folder)
    described = detector_metadata_for(str(folder))
    assert described is not None and described["labels"] == ["square", "disc"]
    assert described["input"]["width"] == 64 and described["detection"]["layout"] == "raw"
    detector = load_detector(str(folder), described)
    image = scene(7)[0][:64, :64]
    found = detector.detect(image[None])[0]
    assert len(found) >= 1 and set(found.labels.tolist()) == {0}
    # the same as the model's own forward pass, decoded by hand: the best query's box
    x = torch.from_numpy(detector_input(described, image))
    with torch.no_grad():
        out = model(pixel_values=x)
    probs = out.logits.softmax(-1)[0, :, :-1]
    best = int(probs.max(-1).values.argmax())
    cx, cy, w, h = (out.pred_boxes[0, best] * 64).tolist()
    np.testing.assert_allclose(found.boxes[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2],
                               atol=1e-3)  # fmt: skip


def detector_input(described: dict, image: np.ndarray) -> np.ndarray:
    from limner.models.onnx_detector import detector_metadata

    return detector_metadata(described)[0].input.preprocess(image[None]).astype(np.float32)


@pytest.fixture(scope="module")
def faces_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """limner's own service serving the built-in face detector on loopback: its URL and key."""
    from limner.client import APIClient
    from limner.service import EmbeddedServer, create_app
    from limner.settings import Settings
    from limner.store import Database, create_key

    settings = Settings(data_dir=tmp_path_factory.mktemp("oi"), database_url="", workers=1)
    db = Database(settings.resolved_database_url())
    db.migrate()
    key = create_key(db, "default", role="admin")
    db.close()
    with EmbeddedServer(create_app(settings)) as server:
        with APIClient(server.url, api_key=key) as client:
            client.deployments.create(name="faces", model="opencv-faces")
        yield f"{server.url}/v2/models/faces", key


def test_an_open_inference_detector_answers_as_the_detector_it_serves(faces_url):
    url, key = faces_url
    remote = load_detector(url, remote_faces_metadata(), headers={"Authorization": f"Bearer {key}"})
    from limner.imaging import resize

    images = np.stack([resize(data.astronaut(), 320, 320), np.full((320, 320, 3), 90, np.uint8)])
    _same(remote.detect(images), opencv_faces().detect(images))  # the padding row is dropped
    with pytest.raises(Exception, match="401"):
        load_detector(url, remote_faces_metadata())  # no key: the server refuses
