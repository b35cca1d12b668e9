"""Object detectors in the service: deployed (the built-in ``opencv-faces``, ONNX uploads),
scored (the detections logged with the transaction, and as ``/v2`` output tensors), a box
explained and compared; and the refusals: bad detector outputs at deploy, boxes that are not
there, what a box cannot be explained with, another space's transactions."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from svc_helpers import FAST, Running
from torch import nn

from detector_helpers import remote_faces_metadata
from limner.client import APIClient
from limner.errors import InvalidInputError, LimnerError, NotFoundError
from limner.explain.detection import BOX_COLOUR
from limner.imaging import encode_png

SIDE = 64


class FixedBoxes(nn.Module):
    """An ONNX-exportable "detector" that answers the same boxes for every image (scaled by
    nothing the image holds): what a broken export or a wrong declaration looks like."""

    def __init__(self, boxes: list[list[float]], scores: list[float]) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.tensor([boxes], dtype=torch.float32))
        self.register_buffer("scores", torch.tensor([scores], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zero = x.mean() * 0
        labels = torch.zeros(self.scores.shape, dtype=torch.int64)
        return self.boxes + zero, self.scores + zero, labels


def fixed_detector(directory: Path, name: str, corners: list[list[float]], **detection: object):
    """An ONNX file of :class:`FixedBoxes` and its metadata (a dict)."""
    path = directory / f"{name}.onnx"
    torch.onnx.export(
        FixedBoxes(corners, [0.9] * len(corners)), torch.zeros(1, 3, SIDE, SIDE), str(path),
        input_names=["images"], output_names=["boxes", "scores", "labels"], dynamo=False,
    )  # fmt: skip
    meta = {
        "labels": ["thing", "other"],
        "problem_type": "detection",
        "input": {"width": SIDE, "height": SIDE, "layout": "NCHW", "scale": 1 / 255},
        "detection": detection,
    }
    return path, meta


@pytest.fixture(scope="module")
def faces(shared: Running) -> dict[str, object]:
    """A space with the built-in face detector deployed, subscribed, explainable, and the
    astronaut photo scored through it."""
    key = shared.new_key("detectors")
    client = shared.client(key)
    dep = client.deployments.create(name="faces", model="opencv-faces")
    sub = client.subscriptions.create(dep)
    sub.enable_explainability(**FAST)
    scored = client.score(dep, encode_png(data.astronaut()))
    return {"client": client, "key": key, "dep": dep, "sub": sub, "scored": scored}


def test_a_detector_scores_boxes_and_logs_them(faces: dict, shared: Running):
    scored = faces["scored"]
    assert scored.detections, "the face detector finds the astronaut's face"
    best = scored.detections[0]
    x0, y0, x1, y1 = best["box"]
    # her face lies around (225, 115) of the 512×512 photo
    assert x0 < 225 < x1 and y0 < 115 < y1 and (x1 - x0) < 200
    assert scored.label == "face" and scored.probability == pytest.approx(best["score"])
    tx = faces["client"].transactions.get(scored.scoring_id)
    assert tx["detections"] == scored.detections
    assert tx["label"] == "face"
    dep = faces["client"].deployments.get(faces["dep"].id)
    assert dep.model == "opencv-faces"
    headers = {"Authorization": f"Bearer {faces['key']}"}
    listed = httpx.get(f"{shared.url}/v1/deployments/{faces['dep'].id}", headers=headers).json()
    assert listed["problem_type"] == "detection"


def test_v2_answers_a_detectors_boxes_as_tensors(faces: dict, shared: Running):
    png = encode_png(data.astronaut())
    photo = encode_png(np.full((80, 120, 3), 200, np.uint8))  # nothing to find
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [2],
                "data": [base64.b64encode(png).decode(), base64.b64encode(photo).decode()],
            }
        ]
    }
    headers = {"Authorization": f"Bearer {faces['key']}"}
    r = httpx.post(f"{shared.url}/v2/models/faces/infer", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["num_detections"]["data"] == [len(faces["scored"].detections), 0]
    k = len(faces["scored"].detections)
    assert out["detection_boxes"]["shape"] == [2, k, 4]
    boxes = np.asarray(out["detection_boxes"]["data"]).reshape(2, k, 4)
    np.testing.assert_allclose(boxes[0, 0], faces["scored"].detections[0]["box"], atol=0.01)
    classes = np.asarray(out["detection_classes"]["data"]).reshape(2, k)
    assert (classes[1] == -1).all()  # the padding of the image without boxes
    meta = httpx.get(f"{shared.url}/v2/models/faces", headers=headers).json()
    assert {o["name"] for o in meta["outputs"]} >= {"detection_boxes", "num_detections"}
    wrong = httpx.post(
        f"{shared.url}/v2/models/faces/infer",
        json={**body, "outputs": [{"name": "prediction"}]},
        headers=headers,
    )
    assert wrong.status_code == 422 and "detection_boxes" in wrong.text


def test_a_box_is_explained_with_its_outline_on_the_panes(faces: dict, tmp_path: Path):
    client: APIClient = faces["client"]
    scored = faces["scored"]
    exp = client.explanations.create(scored.scoring_id, box=0).wait(timeout=240)
    assert exp.status == "finished", exp.error
    result = exp.result
    assert result["detection"]["index"] == 0
    np.testing.assert_allclose(result["detection"]["box"], scored.detections[0]["box"], atol=0.01)
    item = result["explanations"][0]
    assert item["label"].startswith("box 0 (face)")
    assert exp.data["settings"]["box"] == 0
    rgb = np.asarray(Image.open(io.BytesIO(exp.image("positive"))).convert("RGB"))
    x0, y0 = (round(v) for v in result["detection"]["box"][:2])
    # the box's outline, yellow, where its top-left corner is
    corner = rgb[y0 : y0 + 4, x0 : x0 + 12].reshape(-1, 3)
    assert (np.abs(corner.astype(int) - BOX_COLOUR).sum(axis=1) < 60).any()
    # the report of a box: its region table under the box's name
    report = client.reports.save([exp], tmp_path / "box.html", format="html").read_text()
    assert "box 0 (face)" in report and "Deletion" in report


def test_a_box_is_compared_across_methods(faces: dict):
    client: APIClient = faces["client"]
    sid = faces["scored"].scoring_id
    c = client.comparisons.create(sid, methods=["kernelshap", "drise"], box=0)
    c = c.wait(timeout=300)
    assert c.status == "finished"
    assert [e.method for e in c.explanations] == ["kernelshap", "drise"]
    for e in c.explanations:
        assert client.explanations.get(e.id).result["detection"]["index"] == 0
    assert c.classes and c.classes[0]["agreement"]


def test_what_a_box_cannot_be_explained_with_is_422(faces: dict, shared: Running):
    client: APIClient = faces["client"]
    sid = faces["scored"].scoring_id
    n = len(faces["scored"].detections)
    for overrides, words in (
        ({"box": n}, f"found {n} boxes"),
        ({"box_label": "car"}, "no box labelled 'car'"),
        ({"method": "gradcam"}, "kernelshap, lime, occlusion, rise, drise"),
        ({"classes": [0]}, "box or box_label"),
    ):
        with pytest.raises(InvalidInputError, match=words):
            client.explanations.create(sid, **overrides)
    # another space's key sees no such transaction, box or not
    stranger = shared.client(shared.new_key("detectors-stranger"))
    with pytest.raises(NotFoundError):
        stranger.explanations.create(sid, box=0)


def test_an_image_without_boxes_has_none_to_explain(faces: dict):
    client: APIClient = faces["client"]
    blank = client.score(faces["dep"], encode_png(np.full((200, 300, 3), 90, np.uint8)))
    assert blank.detections == [] and blank.label == "" and blank.class_index == -1
    with pytest.raises(InvalidInputError, match="found nothing"):
        client.explanations.create(blank.scoring_id)


def test_auto_explain_queues_a_box_per_image_with_boxes_and_skips_only_the_blank_one(
    shared: Running,
):
    """``auto_explain`` on a detector: one request scores a photo with a face and a blank
    image; the photo's transaction gets its explanation job (its best box), stored with it, and
    the blank one, which has no box to explain, gets none, without costing the photo its job or
    the request its answer."""
    client = shared.client(shared.new_key("detectors-auto"))
    dep = client.deployments.create(name="faces-auto", model="opencv-faces")
    sub = client.subscriptions.create(dep)
    sub.enable_explainability(**FAST, auto_explain=True)
    blank = encode_png(np.full((200, 300, 3), 90, np.uint8))
    face, empty = client.score_many(dep, [encode_png(data.astronaut()), blank])
    assert face.detections and empty.detections == []
    jobs = client.explanations.list(scoring_id=face.scoring_id)
    assert len(jobs) == 1 and jobs[0].data["settings"]["box"] == 0
    assert jobs[0].data["settings"]["background"] is True
    assert client.explanations.list(scoring_id=empty.scoring_id) == []


def test_box_is_refused_for_a_classifiers_transaction(shared: Running, tmp_path: Path):
    from svc_helpers import TinyConv, deploy_onnx

    client = shared.client(shared.new_key("detectors-classifier"))
    dep = deploy_onnx(client, "tiny", TinyConv(), tmp_path)
    sub = client.subscriptions.create(dep)
    sub.enable_explainability(**FAST)
    sid = client.score(dep, encode_png(np.full((32, 32, 3), 50, np.uint8))).scoring_id
    with pytest.raises(InvalidInputError, match="object detector"):
        client.explanations.create(sid, box=0)
    with pytest.raises(InvalidInputError, match="drise explains an object detector"):
        client.explanations.create(sid, method="drise")


def test_an_onnx_detector_upload_is_scored_and_bad_outputs_are_422(shared: Running, tmp_path: Path):
    client = shared.client(shared.new_key("detectors-upload"))
    good, meta = fixed_detector(tmp_path, "good", [[8, 8, 40, 40]], box_format="xyxy")
    dep = client.deployments.create(name="fixed", file=good, metadata=meta)
    scored = client.score(dep, encode_png(np.zeros((128, 256, 3), np.uint8)))
    # 8..40 of a 64-pixel input is 16..80 of a 128-pixel-high, 32..160 of a 256-wide photo
    assert scored.detections[0]["box"] == [32.0, 16.0, 160.0, 80.0]

    cases = {
        "nan": ([[float("nan"), 0, 10, 10]], {}, "not a finite number"),
        # xyxy declared, but the corners are (x, y, w, h): x1 < x0
        "format": ([[40, 40, 10, 10]], {"box_format": "xyxy"}, "declared box format"),
        # pixels declared normalized: 64 times too large
        "normalized": ([[8, 8, 40, 40]], {"normalized": True}, "declared box format"),
        "output": ([[8, 8, 40, 40]], {"boxes": "bbox"}, "no output 'bbox'"),
    }
    for name, (boxes, detection, words) in cases.items():
        path, bad = fixed_detector(tmp_path, name, boxes, **detection)
        with pytest.raises(InvalidInputError, match=words):
            client.deployments.create(name=f"bad-{name}", file=path, metadata=bad)
        assert all(d.name != f"bad-{name}" for d in client.deployments.list())


def test_a_detectors_metadata_cannot_reach_the_servers_files(shared: Running, tmp_path: Path):
    """A detector is deployed as the tenant's own upload or the built-in: a tenant naming a
    server path (a detector's folder, say) is refused as any server path is."""
    client = shared.client(shared.new_key("detectors-paths"))
    folder = tmp_path / "det"
    folder.mkdir()
    _, meta = fixed_detector(folder, "model", [[8, 8, 40, 40]])
    (folder / "limner-model.json").write_text(json.dumps(meta))
    from limner.errors import ForbiddenError

    with pytest.raises(ForbiddenError):
        client.deployments.create(name="server-det", model=str(folder))


def test_grpc_answers_a_detectors_boxes(tmp_path: Path):
    import grpc
    from svc_helpers import running

    from limner.protocol import grpc_predict_v2_pb2 as pb
    from limner.protocol import grpc_predict_v2_pb2_grpc as pb_grpc
    from limner.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url="", workers=2, grpc_port=0)
    with running(settings) as r:
        with r.client() as client:
            client.deployments.create(name="faces", model="opencv-faces")
        channel = grpc.insecure_channel(f"127.0.0.1:{r.server.app.state.grpc_port}")
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        req = pb.ModelInferRequest(model_name="faces")
        tensor = req.inputs.add(name="image", datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append(encode_png(data.astronaut()))
        resp = stub.ModelInfer(req, metadata=[("authorization", f"Bearer {r.key}")])
        channel.close()
    out = {o.name: o for o in resp.outputs}
    assert list(out["num_detections"].contents.int64_contents) == [1]
    assert list(out["detection_boxes"].shape) == [1, 1, 4]
    x0, y0, x1, y1 = out["detection_boxes"].contents.fp32_contents
    assert x0 < 225 < x1 and y0 < 115 < y1


def test_a_url_detector_deploys_through_the_guard_and_scores(tmp_path: Path):
    from svc_helpers import running

    from limner.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url="", workers=2, allowed_urls="127.0.0.1")
    with running(settings) as r:
        source_key = r.new_key("detector-source")
        with r.client(source_key) as source:
            source.deployments.create(name="faces", model="opencv-faces")
        url = f"{r.url}/v2/models/faces"
        with r.client(r.new_key("detector-user")) as client:
            headers = {"Authorization": f"Bearer {source_key}"}
            dep = client.deployments.create(
                name="remote-faces", model=url, metadata=remote_faces_metadata(), headers=headers
            )
            scored = client.score(dep, encode_png(data.astronaut()))
            assert scored.detections and scored.detections[0]["label"] == "face"
            x0, y0, x1, y1 = scored.detections[0]["box"]
            assert x0 < 225 < x1 and y0 < 115 < y1
            # a name that never resolves is refused before anything is deployed
            never = "http://faces.invalid/v2/models/faces"
            with pytest.raises(LimnerError) as refused:
                client.deployments.create(
                    name="nowhere", model=never, metadata=remote_faces_metadata()
                )
            assert refused.value.status in (403, 422, 503)


def test_a_url_detector_is_refused_where_the_operator_allows_no_urls(shared: Running):
    """The attack test of the detector URL field: loopback (the server's own /v2, or anything
    listening there) is refused by the address guard unless the operator lists it."""
    from limner.errors import ForbiddenError

    client = shared.client(shared.new_key("detectors-ssrf"))
    url = f"{shared.url}/v2/models/faces"
    with pytest.raises(ForbiddenError):
        client.deployments.create(name="loop", model=url, metadata=remote_faces_metadata())
    assert client.deployments.list() == []


def test_a_tenant_uploads_a_keras_detector(shared: Running, tmp_path: Path):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    inputs = keras.Input((SIDE, SIDE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    corners = keras.layers.Dense(4, kernel_initializer="zeros", name="box_dense")(pooled)
    score = keras.layers.Dense(1, activation="sigmoid")(pooled)
    label = keras.layers.Dense(1, kernel_initializer="zeros")(pooled)
    outputs = {
        "boxes": keras.layers.Reshape((1, 4), name="boxes")(corners),
        "scores": keras.layers.Reshape((1,), name="scores")(score),
        "labels": keras.layers.Reshape((1,), name="labels")(label),
    }
    model = keras.Model(inputs, outputs)
    model.get_layer("box_dense").bias.assign(np.array([8.0, 8.0, 40.0, 40.0], np.float32))
    path = tmp_path / "det.keras"
    model.save(path)
    meta = {
        "labels": ["thing", "other"],
        "problem_type": "detection",
        "input": {"width": SIDE, "height": SIDE, "layout": "NHWC", "scale": 1 / 255},
        "detection": {"box_format": "xyxy"},
    }
    client = shared.client(shared.new_key("detectors-keras"))
    dep = client.deployments.create(name="keras-det", file=path, metadata=meta)
    scored = client.score(dep, encode_png(np.zeros((64, 64, 3), np.uint8)))
    assert scored.detections[0]["box"] == [8.0, 8.0, 40.0, 40.0]


def test_a_tenants_torchscript_detector_is_refused_unread(shared: Running, tmp_path: Path):
    """A file that runs code, declared a detector: a tenant's TorchScript (a format whose
    loading runs the file's code) in a detector folder is refused before anything loads it, as
    a classifier's is, and nothing is deployed."""
    import zipfile

    from limner.errors import ForbiddenError

    pt = tmp_path / "model.pt"
    traced = torch.jit.trace(FixedBoxes([[8, 8, 40, 40]], [0.9]), torch.zeros(1, 3, SIDE, SIDE))
    traced.save(str(pt))
    _, meta = fixed_detector(tmp_path, "m", [[8, 8, 40, 40]])
    archive = tmp_path / "det.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(pt, "model.pt")
        z.writestr("limner-model.json", json.dumps({**meta, "artifact": "model.pt"}))
    client = shared.client(shared.new_key("detectors-code"))
    with pytest.raises(ForbiddenError, match=r"(?i)torchscript"):
        client.deployments.create(name="thief", file=archive)
    assert client.deployments.list() == []


class RedBox(nn.Module):
    """A differentiable detector: one fixed box, scored by how red the image is inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("box", torch.tensor([[[16.0, 16.0, 48.0, 48.0]]]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inside = x[:, :, 16:48, 16:48]
        red = inside[:, 0].mean(dim=(1, 2)) - inside[:, 1:].mean(dim=(1, 2, 3))
        scores = torch.sigmoid(10 * red - 2)[:, None]
        boxes = self.box.expand(x.shape[0], 1, 4)
        return boxes, scores, torch.zeros_like(scores, dtype=torch.int64)


def test_a_torch_detectors_box_is_explained_with_gradients_in_its_worker(
    shared: Running, tmp_path: Path
):
    """An operator's TorchScript detector explains a box with Integrated Gradients (run in the
    model's worker, where its tensors are): the weight lies inside the box and adds up to the
    box score; a detector without a torch forward gets a 422 naming what it can use."""
    import zipfile

    pt = tmp_path / "model.pt"
    torch.jit.trace(RedBox(), torch.zeros(1, 3, SIDE, SIDE)).save(str(pt))
    _, meta = fixed_detector(tmp_path, "m", [[8, 8, 40, 40]])
    archive = tmp_path / "red.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(pt, "model.pt")
        z.writestr("limner-model.json", json.dumps({**meta, "artifact": "model.pt"}))
    admin = shared.client()
    dep = admin.deployments.create(name="red-box", file=archive)
    sub = admin.subscriptions.create(dep)
    sub.enable_explainability(**FAST)
    image = np.full((SIDE, SIDE, 3), 40, np.uint8)
    image[20:44, 20:44] = (230, 30, 30)
    scored = admin.score(dep, encode_png(image))
    assert scored.detections[0]["box"] == [16.0, 16.0, 48.0, 48.0]
    exp = admin.explanations.create(scored.scoring_id, method="integrated-gradients", box=0)
    exp = exp.wait(timeout=240)
    assert exp.status == "finished", exp.error
    item = exp.result["explanations"][0]
    assert exp.result["method"] == "integrated-gradients" and exp.result["detection"]["index"] == 0
    assert item["completeness_gap"] <= 0.01
    top = max(item["regions"], key=lambda r: r["weight"])
    x0, y0, x1, y1 = top["bbox"]
    assert 16 <= (x0 + x1) / 2 <= 48 and 16 <= (y0 + y1) / 2 <= 48, top
    with pytest.raises(InvalidInputError, match="gradcam hooks"):
        admin.explanations.create(scored.scoring_id, method="gradcam")

    path, onnx_meta = fixed_detector(tmp_path, "fixed", [[8, 8, 40, 40]])
    tenant = shared.client(shared.new_key("detectors-gradients"))
    black_box = tenant.deployments.create(name="fixed", file=path, metadata=onnx_meta)
    tenant.subscriptions.create(black_box).enable_explainability(**FAST)
    sid = tenant.score(black_box, encode_png(image)).scoring_id
    with pytest.raises(InvalidInputError, match="integrated-gradients needs gradients"):
        tenant.explanations.create(sid, method="integrated-gradients")
