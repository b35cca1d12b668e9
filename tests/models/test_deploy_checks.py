"""A model that deploys either works or says why: every mismatch between a model and its
metadata is a 422 at deploy time naming the field and what the model has; gaps are filled from
the model itself (a Keras model's channels-last input, an ONNX graph's fixed dimensions); a
deployment is called by its name (or the name in its ``limner-model.json``); no error carries
terminal escape codes; Grad-CAM runs on a Keras 3 model (torch backend)."""

from __future__ import annotations

import base64
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import torch
from fastapi import FastAPI
from onnx import TensorProto, helper, numpy_helper

from limner.errors import InvalidInputError, ModelError
from limner.imaging import encode_png
from limner.models import load_model
from limner.models.metadata import plain_text
from limner.protocol import InferenceRequest, InferenceResponse, decode_tensor, encode_tensor
from limner.settings import Settings

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported
keras = pytest.importorskip("keras")

#: Explanation settings that keep the jobs quick.
FAST = {"samples": 48, "segmentation": "grid", "segments": 4, "baseline": "gray"}
THREE = ["cat", "dog", "fox"]


# --- tiny real models -----------------------------------------------------------------------


def onnx_classifier(
    path: Path,
    *,
    size: int = 96,
    classes: int = 3,
    channels: int = 3,
    last: str | None = "Softmax",
) -> Path:
    """A real ONNX classifier with a fixed ``size``×``size`` NCHW float input: the channel
    means through a linear layer (``classes`` outputs), then ``last`` (None: logits)."""
    rng = np.random.default_rng(classes)
    w = rng.normal(0.0, 1.0, (channels, classes)).astype(np.float32)
    b = np.linspace(3.0, -3.0, classes).astype(np.float32)  # logits well outside [0, 1]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
    ]
    out = "logits"
    if last is not None:
        extra = {"axis": 1} if last == "Softmax" else {}
        nodes.append(helper.make_node(last, ["logits"], ["scores"], **extra))
        out = "scores"
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def keras_cnn(path: Path, *, size: int | None = 16, kernel: int = 3) -> Path:
    """A small channels-last Keras CNN (two-way softmax), saved as ``.keras``."""
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(4, kernel, padding="valid", activation="relu"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    net.save(path)
    return path


class Scripted(torch.nn.Module):
    """A tiny convolutional network with three logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("deploy-models")
    (d / "zip").mkdir()
    pt = d / "model.pt"
    torch.jit.save(torch.jit.script(Scripted()), str(pt))
    ts_meta = {
        "name": "shapes3-ts",
        "artifact": "model.pt",
        "labels": THREE,
        "input": {"width": 16, "height": 16},
        "output": "logits",
    }
    with zipfile.ZipFile(d / "shapes3-ts.zip", "w") as z:
        z.write(pt, "model.pt")
        z.writestr("limner-model.json", json.dumps(ts_meta))
    return {
        "softmax3": onnx_classifier(d / "softmax3.onnx"),
        "logits3": onnx_classifier(d / "logits3.onnx", last=None),
        "sigmoid3": onnx_classifier(d / "sigmoid3.onnx", last="Sigmoid"),
        "gray": onnx_classifier(d / "gray.onnx", channels=1),
        "keras": keras_cnn(d / "shapes.keras"),
        "keras_any_size": keras_cnn(d / "any.keras", size=None, kernel=9),
        "torchscript_zip": d / "shapes3-ts.zip",
    }


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from service.svc_helpers import running

    data_dir = tmp_path_factory.mktemp("deploy-checks")
    settings = Settings(data_dir=data_dir, database_url="", workers=2, allowed_urls="127.0.0.1")
    with running(settings) as r:
        yield r


@pytest.fixture(scope="module")
def http(svc) -> Iterator[httpx.Client]:
    key = svc.new_key("deploy-checks")
    with httpx.Client(
        base_url=svc.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:
        yield client


def upload(http: httpx.Client, name: str, path: Path, metadata: dict | None) -> httpx.Response:
    data = {"name": name}
    if metadata is not None:
        data["metadata"] = json.dumps(metadata)
    return http.post("/v1/deployments", data=data, files={"file": (path.name, path.read_bytes())})


def refused(resp: httpx.Response) -> str:
    assert resp.status_code == 422, resp.text
    message = str(resp.json()["error"]["message"])
    assert "\x1b" not in message and "\n" not in message
    return message


def score(http: httpx.Client, dep_id: str, size: int = 40) -> httpx.Response:
    image = np.zeros((size, size, 3), np.uint8)
    image[: size // 2] = 220
    payload = base64.b64encode(encode_png(image)).decode()
    return http.post(f"/v1/deployments/{dep_id}/predictions", json={"images": [payload]})


def names(http: httpx.Client) -> list[str]:
    return [d["name"] for d in http.get("/v1/deployments").json()["deployments"]]


# --- every mismatch of the issue is a 422 naming the field -----------------------------------


def test_more_outputs_than_labels_is_refused(http: httpx.Client, files: dict[str, Path]) -> None:
    meta = {"labels": ["cat", "dog"], "input": {"width": 96, "height": 96}}
    message = refused(upload(http, "two-for-three", files["softmax3"], meta))
    assert "labels: the model has 3 outputs but 2 labels were given" in message
    assert "two-for-three" not in names(http)


def test_width_against_a_fixed_input_is_refused(http: httpx.Client, files: dict[str, Path]) -> None:
    message = refused(
        upload(http, "narrow", files["softmax3"], {"labels": THREE, "input": {"width": 50}})
    )
    assert "input.width: the model's input is fixed at 96×96, not 50" in message


@pytest.mark.parametrize(
    ("model", "meta", "expected"),
    [
        ("softmax3", {"input": {"layout": "NHWC"}}, "input.layout: the model's input is NCHW"),
        ("softmax3", {"input": {"dtype": "uint8"}}, "input.dtype: the model takes float32 input"),
        ("gray", {"input": {"channels": 3}}, "input.channels: the model takes 1 channel"),
        ("logits3", {"output": "probabilities"}, "outside [0, 1], so they are not probabilities"),
        ("sigmoid3", {}, "output: the model's 3 outputs of an image sum to"),
        ("softmax3", {"output": "logits"}, "output: the model's outputs are probabilities already"),
    ],
    ids=["layout", "dtype", "channels", "logits-as-probabilities", "sigmoids", "softmax-as-logits"],
)
def test_each_mismatch_names_its_field(
    http: httpx.Client, files: dict[str, Path], model: str, meta: dict, expected: str
) -> None:
    message = refused(upload(http, f"bad-{model}", files[model], {"labels": THREE, **meta}))
    assert expected in message


def test_onnx_with_labels_only_takes_its_fixed_input_and_scores(
    http: httpx.Client, files: dict[str, Path]
) -> None:
    resp = upload(http, "fixed-96", files["logits3"], {"labels": THREE})
    assert resp.status_code == 201, resp.text
    dep = resp.json()
    assert dep["input_size"] == [96, 96] and dep["num_classes"] == 3
    meta = http.get("/v2/models/fixed-96").json()["parameters"]["limner_model"]
    assert meta["output"] == "logits"  # the graph ends in a linear operator
    assert meta["name"] == "fixed-96"  # the deployment's name, not "model" or its id
    scored = score(http, dep["id"])
    assert scored.status_code == 200, scored.text
    probabilities = scored.json()["predictions"][0]["probabilities"]
    assert set(probabilities) == set(THREE) and abs(sum(probabilities.values()) - 1) < 1e-4


def test_what_is_still_missing_is_named_in_one_message(tmp_path: Path) -> None:
    bare = onnx_classifier(tmp_path / "bare.onnx")
    with pytest.raises(InvalidInputError) as info:
        load_model(bare, device="cpu")
    message = info.value.message
    assert "missing labels (the model has 3 outputs)" in message and "limner-model.json" in message


# --- Keras: channels-last input derived, labels + problem_type are enough --------------------


@pytest.fixture(scope="module")
def keras_dep(http: httpx.Client, files: dict[str, Path]) -> dict:
    """The Keras CNN deployed with nothing but its labels and problem type."""
    meta = {"labels": ["circle", "square"], "problem_type": "binary"}
    resp = upload(http, "shapes-keras", files["keras"], meta)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_keras_with_labels_and_problem_type_only_deploys_and_scores(
    http: httpx.Client, keras_dep: dict
) -> None:
    model = http.get("/v2/models/shapes-keras").json()["parameters"]["limner_model"]
    assert model["input"]["layout"] == "NHWC" and model["input"]["width"] == 16
    assert model["name"] == "shapes-keras"  # the deployment's name, not "model"
    scored = score(http, keras_dep["id"])
    assert scored.status_code == 200, scored.text
    assert set(scored.json()["predictions"][0]["probabilities"]) == {"circle", "square"}


def test_keras_size_alone_keeps_channels_last_and_a_wrong_layout_is_named(
    files: dict[str, Path],
) -> None:
    meta = {"labels": ["circle", "square"], "problem_type": "binary"}
    # the second try: the size given, the model's channels-last layout kept
    sized = load_model(files["keras"], metadata={**meta, "input": {"width": 16}}, verify=True)
    assert sized.metadata.input.layout == "NHWC" and sized.input_size == (16, 16)
    with pytest.raises(InvalidInputError) as info:
        load_model(files["keras"], metadata={**meta, "input": {"layout": "NCHW"}}, verify=True)
    assert "input.layout: the model's input is NHWC (N, 16, 16, 3), not NCHW" in str(info.value)
    with pytest.raises(InvalidInputError, match=r"input\.height: the model's input is fixed"):
        load_model(files["keras"], metadata={**meta, "input": {"height": 20}}, verify=True)


def test_model_errors_carry_no_terminal_escape_codes(
    http: httpx.Client, files: dict[str, Path]
) -> None:
    # a 9×9 kernel on a 4×4 input: Keras' own error (coloured in a terminal) reaches the user
    meta = {"labels": ["a", "b"], "input": {"width": 4, "height": 4}}
    message = refused(upload(http, "tiny-input", files["keras_any_size"], meta))
    assert message.startswith("input: the model cannot run on what its input settings make")
    assert "Kernel size" in message and "\x1b[" not in message


def test_plain_text_and_the_worker_error_mapping_strip_escape_codes() -> None:
    from limner.jobs.sandbox import LoadSpec, _portable

    coloured = "Exception in Conv2D.call().\n\n\x1b[1mKernel size too big\x1b[0m\x1b]8;;x\x07"
    assert plain_text(coloured) == "Exception in Conv2D.call(). Kernel size too big"
    spec = LoadSpec(spec="/srv/models/x/model.keras", folder="/srv/models/x")
    for exc in (ModelError(coloured), ValueError(coloured)):
        mapped = _portable(exc, spec)
        assert "\x1b" not in mapped.message and "Kernel size too big" in mapped.message


# --- names ------------------------------------------------------------------------------------


def _explain(http: httpx.Client, dep_id: str, **settings: object) -> dict:
    sub = http.post("/v1/subscriptions", json={"deployment_id": dep_id})
    assert sub.status_code == 201, sub.text
    put = http.put(
        f"/v1/subscriptions/{sub.json()['id']}/explainability", json={"enabled": True, **settings}
    )
    assert put.status_code == 200, put.text
    scored = score(http, dep_id)
    assert scored.status_code == 200, scored.text
    sid = scored.json()["predictions"][0]["scoring_id"]
    queued = http.post("/v1/explanations", json={"scoring_id": sid})
    assert queued.status_code == 202, queued.text
    url = f"/v1/explanations/{queued.json()['id']}"
    for _ in range(600):
        got = http.get(url).json()
        if got["status"] in ("finished", "failed"):
            assert got["status"] == "finished", got
            return dict(got["result"])
        time.sleep(0.1)
    raise AssertionError("the explanation did not finish")


def test_torchscript_is_called_by_the_name_in_its_metadata(svc, files: dict[str, Path]) -> None:
    with httpx.Client(
        base_url=svc.url, headers={"Authorization": f"Bearer {svc.key}"}, timeout=120
    ) as admin:
        resp = upload(admin, "ts-deployment", files["torchscript_zip"], None)
        assert resp.status_code == 201, resp.text
        model = admin.get("/v2/models/ts-deployment").json()["parameters"]["limner_model"]
        assert model["name"] == "shapes3-ts"
        result = _explain(admin, resp.json()["id"], method="kernelshap", **FAST)
        assert result["model"] == "shapes3-ts"


def test_gradcam_on_a_keras_model_is_named_by_its_deployment(
    http: httpx.Client, keras_dep: dict
) -> None:
    result = _explain(http, keras_dep["id"], method="gradcam", segmentation="grid", segments=4)
    assert result["method"] == "gradcam" and result["model"] == "shapes-keras"
    # the last channels-last feature map (Keras numbers its layers per process: conv2d_N)
    assert result["layer"].startswith("conv2d")


# --- Grad-CAM on Keras 3 (torch backend), in the library ----------------------------------


def test_gradcam_follows_the_bright_half_of_a_channels_last_keras_model(tmp_path: Path) -> None:
    """A brightness detector: Grad-CAM's map is its feature map weighted by the pooled
    gradient, so it lies on the bright (top) half; taken along the wrong axis (channels
    first) it would be flat from top to bottom."""
    import limner

    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(1, 1, use_bias=False, activation="relu", name="bright"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax", name="head"),
        ]
    )
    net.get_layer("bright").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    net.get_layer("head").set_weights([np.array([[-4.0, 4.0]], np.float32), np.zeros(2)])
    path = tmp_path / "bright.keras"
    net.save(path)
    model = load_model(path, metadata={"labels": ["dark", "bright"]}, verify=True)
    image = np.full((16, 16, 3), 10, np.uint8)
    image[:8] = 240
    exp = limner.explain(image, model, method="gradcam", classes=["bright"], segments=4)
    assert exp.layer == "bright"
    cam = np.asarray(exp.saliency[exp.explained_classes[0]])
    assert cam[:8].mean() > 5 * max(cam[8:].mean(), 1e-9)


# --- a forward pass that never ends is refused, saying so ------------------------------------


def endless_onnx(path: Path) -> Path:
    """A valid 8×8 classifier whose forward pass runs a loop of 2^62 steps."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    nodes = [  # the trip count depends on the image: nothing to fold when the session starts
        helper.make_node("ReduceMean", ["image"], ["mean_all"], keepdims=0),
        helper.make_node("Less", ["mean_all", "two"], ["always"]),
        helper.make_node("Where", ["always", "endless", "once"], ["trips"]),
        helper.make_node("Loop", ["trips", "keep", "zero"], ["acc"], body=body),
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["acc", "nothing"], ["a0"]),
        helper.make_node("Add", ["m", "a0"], ["s"]),
        helper.make_node("Slice", ["s", "start", "stop", "axis"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probability"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "endless",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor("endless", TensorProto.INT64, [], [2**62]),
            helper.make_tensor("once", TensorProto.INT64, [], [1]),
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("keep", TensorProto.BOOL, [], [True]),
            helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
            helper.make_tensor("nothing", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("start", TensorProto.INT64, [1], [0]),
            helper.make_tensor("stop", TensorProto.INT64, [1], [2]),
            helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_model_that_never_scores_is_refused_saying_why(tmp_path: Path) -> None:
    from service.svc_helpers import running

    settings = Settings(data_dir=tmp_path, database_url="", workers=1, model_load_timeout=5)
    meta = {"labels": ["dark", "bright"], "input": {"width": 8, "height": 8}}
    with running(settings) as r:
        auth = {"Authorization": f"Bearer {r.key}"}
        http = httpx.Client(base_url=r.url, headers=auth, timeout=60)
        with http:
            # a healthy model first: the workers' fork server is up, a load takes a moment
            ok = upload(
                http, "fine", onnx_classifier(tmp_path / "fine.onnx", size=8, classes=2), meta
            )
            assert ok.status_code == 201, ok.text
            resp = upload(http, "endless", endless_onnx(tmp_path / "endless.onnx"), meta)
            assert resp.status_code == 503, resp.text
            assert "loaded, but did not score two synthetic images within 5 s" in resp.text
            assert names(http) == ["fine"]


# --- URL models and external subscriptions: checked against what their server publishes ------


def three_class_server() -> FastAPI:
    """An Open Inference server publishing a 3-class model of raw 8×8 pixels."""
    app = FastAPI()

    @app.get("/v2/models/three")
    def read() -> dict:
        return {
            "name": "three",
            "platform": "test",
            "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8, 3]}],
            "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 3]}],
        }

    @app.post("/v2/models/three/infer")
    def infer(req: InferenceRequest) -> InferenceResponse:
        x = decode_tensor(req.inputs[0])
        p = np.full((len(x), 3), 1 / 3, np.float32)
        return InferenceResponse(model_name="three", outputs=[encode_tensor("probability", p)])

    return app


def test_url_models_and_external_subscriptions_are_checked_against_their_server(
    http: httpx.Client,
) -> None:
    from limner.service import EmbeddedServer

    with EmbeddedServer(three_class_server()) as server:
        url = f"{server.url}/v2/models/three"
        resp = http.post(
            "/v1/deployments", json={"name": "url-two", "model": url, "labels": ["a", "b"]}
        )
        assert "labels: the model has 3 outputs but 2 labels were given" in refused(resp)
        ok = http.post("/v1/deployments", json={"name": "url-three", "model": url, "labels": THREE})
        assert ok.status_code == 201, ok.text
        assert ok.json()["input_size"] == [8, 8]  # as the server publishes it
        body = {"name": "ext-two", "scoring_url": url, "labels": ["a", "b"]}
        message = refused(http.post("/v1/subscriptions", json=body))
        assert "labels: the model has 3 outputs but 2 labels were given" in message
        body = {"name": "ext-wide", "scoring_url": url, "labels": THREE, "input": {"width": 50}}
        message = refused(http.post("/v1/subscriptions", json=body))
        assert "input.width: the model's input is fixed at 8×8, not 50" in message
        body = {"name": "ext-three", "scoring_url": url, "labels": THREE}
        sub = http.post("/v1/subscriptions", json=body)
        assert sub.status_code == 201, sub.text
