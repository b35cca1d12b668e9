"""One space's model cannot stop the others: models run in contained workers.

A tenant deploys a tiny, valid ONNX model whose forward pass never ends (a ``Loop`` of one
``Add`` with a trip count of 2^62) and scores it from 48 concurrent clients. Another space keeps
working: listing deployments, scoring a healthy model and ``/healthz`` stay fast, the slow calls
fail with a clear error at their limit, and another space's explanation is not slowed down much.
Before containment, the model ran on the API server's threads with no time limit.
"""

from __future__ import annotations

import io
import json
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from limits_helpers import Server, limner_serve, rss_bytes
from onnx import TensorProto, helper
from PIL import Image
from sec_helpers import TINY_META, tiny_onnx

#: Seconds a model call may take on the attacked server.
CALL_TIMEOUT = 3.0
#: Concurrent clients of the attacker.
ATTACKERS = 48


def endless_onnx(path: Path, trip_count: int = 2**62) -> Path:
    """A valid classifier of 8×8 images whose forward pass runs ``trip_count`` loop steps on a
    dark image (mean below 0.1 after scaling), one step on others: it passes the check that
    a deployment scores (synthetic, mid-gray images), then never ends on the attacker's."""
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
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
    body.node.insert(0, helper.make_node("Identity", ["cond"], ["cond_out"]))
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean_all"], keepdims=0),
        helper.make_node("Less", ["mean_all", "dark_below"], ["dark"]),
        helper.make_node("Where", ["dark", "trips_endless", "trips_once"], ["trips"]),
        helper.make_node("Loop", ["trips", "keep", "zero"], ["acc"], body=body),
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["m", "nothing"], ["m0"]),
        helper.make_node("Add", ["m0", "acc"], ["s"]),
        helper.make_node("Mul", ["s", "nothing"], ["s0"]),
        helper.make_node("Concat", ["s0", "s0"], ["z"], axis=1),
        helper.make_node("Softmax", ["z"], ["probability"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "endless",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor("trips_endless", TensorProto.INT64, [], [trip_count]),
            helper.make_tensor("trips_once", TensorProto.INT64, [], [1]),
            helper.make_tensor("dark_below", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("keep", TensorProto.BOOL, [], [True]),
            helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
            helper.make_tensor("nothing", TensorProto.FLOAT, [], [0.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _png(value: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def _photo() -> bytes:
    """A 96×96 photo with structure: bright and dark blocks."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (6, 6, 1)).repeat(16, 0).repeat(16, 1).repeat(3, 2)
    buf = io.BytesIO()
    Image.fromarray(blocks.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _deploy(http: httpx.Client, name: str, model: Path) -> str:
    files = {
        "file": ("model.onnx", model.read_bytes(), "application/octet-stream"),
        "metadata": ("limner-model.json", json.dumps(TINY_META), "application/json"),
    }
    resp = http.post("/v1/deployments", data={"name": name}, files=files)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@dataclass
class Attacked:
    """The server, both spaces' keys and their deployments' ids."""

    server: Server
    attacker: str
    victim: str
    endless: str
    tiny: str


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    """A server with an endless model in space ``attacker`` and a healthy one in ``victim``."""
    tmp = tmp_path_factory.mktemp("contained")
    env = {"LIMNER_MODEL_CALL_TIMEOUT": str(CALL_TIMEOUT), "LIMNER_WORKERS": "4"}
    with limner_serve(tmp, **env) as server:
        attacker, victim = server.new_key("attacker"), server.new_key("victim")
        with server.http(attacker) as http:
            endless = _deploy(http, "endless", endless_onnx(tmp / "endless.onnx"))
        with server.http(victim) as http:
            dep_id = _deploy(http, "tiny", tiny_onnx(tmp / "tiny.onnx"))
            resp = http.post("/v1/subscriptions", json={"deployment_id": dep_id})
            assert resp.status_code == 201, resp.text
            sub = resp.json()["id"]
            resp = http.put(f"/v1/subscriptions/{sub}/explainability", json={"enabled": True})
            assert resp.status_code == 200, resp.text
        yield Attacked(server, attacker, victim, endless, dep_id)


def _explain_seconds(http: httpx.Client, tiny: str) -> float:
    """Seconds from asking for an explanation of a scored photo to its end."""
    scored = http.post(f"/v1/deployments/{tiny}/predictions", files={"file": ("a.png", _photo())})
    assert scored.status_code == 200, scored.text
    sid = scored.json()["predictions"][0]["scoring_id"]
    start = time.perf_counter()
    resp = http.post(
        "/v1/explanations",
        json={"scoring_id": sid, "samples": 400, "segments": 24},
    )
    assert resp.status_code in (200, 201, 202), resp.text
    job = resp.json()["id"]
    while True:
        state = http.get(f"/v1/explanations/{job}").json()
        if state["status"] in ("finished", "failed"):
            assert state["status"] == "finished", state
            return time.perf_counter() - start
        time.sleep(0.05)


def test_an_endless_model_stops_nobody_else(attacked: Attacked) -> None:
    server, attacker, victim = attacked.server, attacked.attacker, attacked.victim
    with server.http(victim) as http:
        idle = statistics.median(_explain_seconds(http, attacked.tiny) for _ in range(3))

    stop = threading.Event()
    outcomes: list[tuple[int, str, float]] = []
    lock = threading.Lock()

    def attack() -> None:
        with server.http(attacker) as http:
            while not stop.is_set():
                start = time.perf_counter()
                resp = http.post(
                    f"/v1/deployments/{attacked.endless}/predictions",
                    files={"file": ("a.png", _png(9))},
                )
                code = resp.json()["error"]["code"] if resp.status_code != 200 else "ok"
                with lock:
                    outcomes.append((resp.status_code, code, time.perf_counter() - start))
                if resp.status_code in (429, 503):  # refused at once: retry when told
                    time.sleep(float(resp.headers.get("retry-after", "1")))

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(ATTACKERS)]
    for t in threads:
        t.start()
    timings: dict[str, list[float]] = {"deployments": [], "predictions": [], "healthz": []}
    try:
        time.sleep(CALL_TIMEOUT)  # the endless calls are running
        with server.http(victim) as http:
            deadline = time.monotonic() + 3 * CALL_TIMEOUT
            while time.monotonic() < deadline:
                for what, call in (
                    ("deployments", lambda: http.get("/v1/deployments")),
                    (
                        "predictions",
                        lambda: http.post(
                            f"/v1/deployments/{attacked.tiny}/predictions",
                            files={"file": ("a.png", _png(40))},
                        ),
                    ),
                    ("healthz", lambda: http.get("/healthz")),
                ):
                    start = time.perf_counter()
                    resp = call()
                    timings[what].append(time.perf_counter() - start)
                    assert resp.status_code == 200, (what, resp.text)
                time.sleep(0.05)
            busy = _explain_seconds(http, attacked.tiny)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=3 * CALL_TIMEOUT)

    for what, seconds in timings.items():
        assert statistics.median(seconds) < 0.5, (what, seconds)
        assert max(seconds) < 2.0, (what, seconds)
    assert busy <= 2 * idle + 0.5, f"idle {idle:.2f} s, under attack {busy:.2f} s"
    # the endless calls failed at their limit with a clear error, the others were refused fast
    timed_out = [o for o in outcomes if o[0] == 504]
    assert timed_out, outcomes[:10]
    assert all(o[1] == "model_timeout" for o in timed_out)
    assert all(o[2] < CALL_TIMEOUT + 2.0 for o in timed_out), max(o[2] for o in timed_out)
    assert {o[0] for o in outcomes} <= {429, 503, 504}, {o[0] for o in outcomes}


def test_the_server_runs_no_tenant_model(attacked: Attacked) -> None:
    """The API server's memory does not hold the models: a second model of 40 MB of weights
    grows a worker, not the server."""
    server, attacker = attacked.server, attacked.attacker
    idle = rss_bytes(server.proc.pid)
    with server.http(attacker) as http:
        big = tiny_onnx(server.data_dir.parent / "big.onnx", padding_bytes=40_000_000)
        big_id = _deploy(http, "big", big)
        resp = http.post(
            f"/v1/deployments/{big_id}/predictions", files={"file": ("a.png", _png(9))}
        )
        assert resp.status_code == 200, resp.text
    assert rss_bytes(server.proc.pid) - idle < 30_000_000
    assert np.isclose(sum(resp.json()["predictions"][0]["probabilities"].values()), 1.0)


def _descendants_rss(pid: int) -> int:
    """Resident memory of every process below ``pid`` (the fork server and the workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo += children.get(child, [])
        with suppress(OSError, AssertionError):  # it may have ended meanwhile
            total += rss_bytes(child)
    return total


def test_deleting_a_deployment_frees_its_memory(attacked: Attacked, tmp_path: Path) -> None:
    """The registry closes a removed model: its worker ends and its memory goes back."""
    server = attacked.server
    with server.http(attacked.attacker) as http:
        fat = _deploy(http, "fat", tiny_onnx(tmp_path / "fat.onnx", padding_bytes=120_000_000))
        resp = http.post(f"/v1/deployments/{fat}/predictions", files={"file": ("a.png", _png(9))})
        assert resp.status_code == 200, resp.text
        loaded = _descendants_rss(server.proc.pid)
        assert http.delete(f"/v1/deployments/{fat}").status_code == 204
    freed = loaded - _descendants_rss(server.proc.pid)
    assert freed > 100_000_000, f"{freed / 1e6:.0f} MB freed"


def _nice(pid: int) -> int:
    """The niceness of process ``pid`` (field 19 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_a_model_that_ran_past_its_limit_runs_at_the_lowest_priority(tmp_path: Path) -> None:
    """After a call of a model is stopped at its limit, its next worker runs at niceness 19,
    so that the model's later calls take only CPU that nobody else wants."""
    from limner.errors import ModelTimeoutError
    from limner.jobs.sandbox import LoadSpec, WorkerLimits
    from limner.jobs.workers import PENALTY_NICE, WorkerModel

    limits = WorkerLimits(call_timeout=1.0)
    model = WorkerModel(
        LoadSpec(str(endless_onnx(tmp_path / "e.onnx")), metadata=TINY_META), limits
    )
    try:
        bright = np.full((1, 3, 8, 8), 0.5, dtype=np.float32)
        assert model.predict_tensor(bright).shape == (1, 2)
        assert model.pid is not None
        assert _nice(model.pid) == limits.nice
        with pytest.raises(ModelTimeoutError):
            model.predict_tensor(np.zeros((1, 3, 8, 8), dtype=np.float32))
        time.sleep(2 * limits.call_timeout + 0.2)  # the model rests twice its limit
        assert model.predict_tensor(bright).shape == (1, 2)
        assert model.pid is not None
        assert _nice(model.pid) == PENALTY_NICE
    finally:
        model.close()
