"""What a remote model may answer: bounded in bytes, in time, in classes, in values.

A tenant deploys a model by URL (or subscribes a ``scoring_url``); the server then reads what that
URL answers. These tests stand up loopback servers that answer too much, too slowly, too many
classes, values that are not probabilities, or content an error must not quote, and check the
remote adapter (:class:`limner.models.remote.RemoteModel` on the service's guarded client) refuses
each with a clear model error. The URL policy's path check is tested on the decision alone.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
from sec_helpers import SECRET_BODY

from limner.errors import InvalidInputError, ModelError, ModelUnavailableError
from limner.models.base import CallableModel
from limner.models.metadata import MAX_CLASSES, MAX_LABEL_CHARS, ModelMetadata
from limner.models.remote import MAX_REMOTE_ANSWER_BYTES, MAX_REMOTE_METADATA_BYTES, RemoteModel
from limner.net import UrlNotAllowedError, UrlPolicy, guarded_client

Route = Callable[[BaseHTTPRequestHandler], None]

#: What the stand-in publishes about its model: limner's own metadata, 2 classes, 8×8 uint8.
LIMNER_MODEL = {
    "name": "m",
    "labels": ["dark", "bright"],
    "input": {"width": 8, "height": 8, "layout": "NHWC", "dtype": "uint8", "scale": 1.0},
    "output": "probabilities",
    "problem_type": "binary",
}
#: Seconds the stand-in keeps dripping (a call still running after them never ended).
DRIP_SECONDS = 8.0
#: The longest a server streams one answer (far over every cap).
STREAM_LIMIT = 3 * MAX_REMOTE_ANSWER_BYTES // 2
IMAGE = np.zeros((1, 8, 8, 3), np.uint8)


def metadata(limner_model: dict[str, Any] | None = None, classes: int = 2) -> dict[str, Any]:
    """A ``GET /v2/models/m`` answer: the tensors, and ``limner_model`` when given."""
    body: dict[str, Any] = {
        "name": "m",
        "platform": "test",
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 8, 3]}],
        "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, classes]}],
    }
    if limner_model is not None:
        body["parameters"] = {"limner_model": limner_model}
    return body


def infer(data: Any, **output: Any) -> dict[str, Any]:
    """A ``POST /v2/models/m/infer`` answer of one output (``output`` overrides its fields)."""
    tensor = {"name": "probability", "shape": [1, 2], "datatype": "FP32", "data": data, **output}
    return {"model_name": "m", "outputs": [tensor]}


def answer(body: Any, *, status: int = 200, text: str | None = None) -> Route:
    """A route answering ``body`` as JSON (or ``text`` as it is: JSON with ``NaN``, say)."""
    data = (text if text is not None else json.dumps(body)).encode()

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return route


class Stream:
    """A route streaming an endless answer (without a length) and counting what got out."""

    def __init__(self, chunk: bytes = b"\x20" * 65536, limit: int = STREAM_LIMIT) -> None:
        self.chunk, self.limit = chunk, limit
        self.sent = 0
        self.done = threading.Event()

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            while self.sent < self.limit:
                h.wfile.write(self.chunk)
                self.sent += len(self.chunk)
        finally:
            self.done.set()


def drip(*, headers: bool) -> Route:
    """A route that sends a byte every 0.25 s for :data:`DRIP_SECONDS`: its headers (a status
    line, then a header that never ends) or, after whole headers, its body."""

    def route(h: BaseHTTPRequestHandler) -> None:
        if headers:
            h.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
        else:
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
        end = time.monotonic() + DRIP_SECONDS
        while time.monotonic() < end:
            h.wfile.write(b"a")
            time.sleep(0.25)

    return route


@contextmanager
def stand_in(routes: dict[str, Route]) -> Iterator[str]:
    """A loopback HTTP server answering ``"METHOD /path"`` by ``routes`` (404 otherwise);
    yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            route = routes.get(f"{self.command} {self.path}")
            try:
                if route is None:
                    self.send_error(404)
                else:
                    route(self)
            except OSError:  # the client hung up: what these tests want of it
                pass

        do_GET = do_POST = _route

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def guarded(base: str, timeout: float = 10.0) -> httpx.Client:
    """The service's client for a model at ``base``: the operator lists it."""
    return guarded_client(UrlPolicy.parse(f"{base}/"), timeout=timeout)


def deploy(base: str, *, timeout: float = 10.0, **kwargs: Any) -> RemoteModel:
    """The remote model at ``base/v2/models/m`` as the service loads it (JSON tensors unless
    ``binary`` is given)."""
    kwargs.setdefault("binary", False)
    return RemoteModel(f"{base}/v2/models/m", client=guarded(base, timeout), **kwargs)


def scored(infer_route: Route, **kwargs: Any) -> np.ndarray:
    """Probabilities of :data:`IMAGE` from a stand-in publishing :data:`LIMNER_MODEL`."""
    routes = {
        "GET /v2/models/m": answer(metadata(LIMNER_MODEL)),
        "POST /v2/models/m/infer": infer_route,
    }
    with stand_in(routes) as base:
        model = deploy(base, **kwargs)
        try:
            return model.predict(IMAGE)
        finally:
            model.close()


# ------------------------------------------------------------------------ 1. answers in bytes


def test_a_metadata_answer_over_the_cap_is_abandoned_while_it_streams() -> None:
    stream = Stream()
    with stand_in({"GET /v2/models/m": stream}) as base:
        with pytest.raises(ModelError) as info:
            deploy(base)
        assert stream.done.wait(10)
    assert not isinstance(info.value, ModelUnavailableError)
    assert f"over {MAX_REMOTE_METADATA_BYTES} bytes" in info.value.message
    # the client stopped reading near the cap: the server could not send the rest
    assert stream.sent < MAX_REMOTE_METADATA_BYTES + 32 * 2**20 < STREAM_LIMIT


def test_a_scoring_answer_over_the_cap_is_abandoned_while_it_streams() -> None:
    stream = Stream()
    with pytest.raises(ModelError) as info:
        scored(stream)
    assert stream.done.wait(10)
    assert not isinstance(info.value, ModelUnavailableError)
    # one image of two classes: a few MB at most, far under the 64 MiB of any batch
    assert "bytes" in info.value.message and "over" in info.value.message
    assert stream.sent < 32 * 2**20 < STREAM_LIMIT


def test_an_answer_declaring_too_many_bytes_is_refused_unread() -> None:
    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10 * MAX_REMOTE_ANSWER_BYTES))
        h.end_headers()
        h.wfile.write(b"{")

    with pytest.raises(ModelError) as info:
        scored(huge)
    assert not isinstance(info.value, ModelUnavailableError) and "over" in info.value.message


def test_an_answer_in_a_coding_not_asked_for_is_refused() -> None:
    def brotli(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Encoding", "br")
        h.send_header("Content-Length", "4")
        h.end_headers()
        h.wfile.write(b"\x0b\x02\x80{")

    with pytest.raises(ModelError) as info:
        scored(brotli)
    assert not isinstance(info.value, ModelUnavailableError)
    assert "did not ask for" in info.value.message


# ------------------------------------------------------------------------ 2. a total deadline


@pytest.mark.parametrize("headers", [True, False], ids=["dripped-headers", "dripped-body"])
def test_a_dripping_metadata_answer_is_abandoned_at_the_deadline(headers: bool) -> None:
    with stand_in({"GET /v2/models/m": drip(headers=headers)}) as base:
        started = time.monotonic()
        with pytest.raises(ModelUnavailableError) as info:
            deploy(base, timeout=1.0)
        took = time.monotonic() - started
    assert took < 2.5, f"a 1 s call took {took:.1f} s"
    assert "within 1 s" in info.value.message


@pytest.mark.parametrize("binary", [False, None], ids=["json", "probing-binary"])
def test_a_dripping_scoring_answer_is_abandoned_at_the_deadline(binary: bool | None) -> None:
    started = time.monotonic()  # probing: no second (JSON) try after a binary try ran out
    with pytest.raises(ModelUnavailableError, match="within 1 s"):
        scored(drip(headers=False), timeout=1.0, binary=binary)
    assert time.monotonic() - started < 2.5


def test_the_deadline_holds_on_the_plain_client_of_the_cli_too() -> None:
    routes = {"GET /v2/models/m": drip(headers=False)}
    with stand_in(routes) as base:
        started = time.monotonic()
        with pytest.raises(ModelUnavailableError, match="within 1 s"):
            RemoteModel(f"{base}/v2/models/m", timeout=1.0)
        assert time.monotonic() - started < 2.5


# ------------------------------------------------------------------------ 3. classes


def test_remote_metadata_claiming_millions_of_classes_is_refused() -> None:
    with stand_in({"GET /v2/models/m": answer(metadata(classes=3_000_000))}) as base:
        started = time.monotonic()
        with pytest.raises(ModelError, match=f"at most {MAX_CLASSES} classes") as info:
            deploy(base, hints={"input": {"width": 8, "height": 8}})
    assert 400 <= info.value.status < 500 and time.monotonic() - started < 5


def test_published_labels_over_the_cap_are_refused() -> None:
    many = {
        **LIMNER_MODEL,
        "labels": [f"c{i}" for i in range(MAX_CLASSES + 1)],
        "problem_type": "multiclass",
    }
    refused = pytest.raises(InvalidInputError, match=f"at most {MAX_CLASSES} classes")
    with stand_in({"GET /v2/models/m": answer(metadata(many))}) as base, refused as info:
        deploy(base)
    assert 400 <= info.value.status < 500


def test_labels_are_capped_in_count_and_length() -> None:
    base = {"input": {"width": 8, "height": 8}}
    ModelMetadata.from_dict({**base, "labels": ["a", "b" * MAX_LABEL_CHARS]})
    with pytest.raises(InvalidInputError, match=f"over {MAX_LABEL_CHARS} characters"):
        ModelMetadata.from_dict({**base, "labels": ["a", "b" * (MAX_LABEL_CHARS + 1)]})
    with pytest.raises(InvalidInputError, match=f"at most {MAX_CLASSES} classes"):
        ModelMetadata.from_dict({**base, "labels": list(range(MAX_CLASSES + 1))})
    assert (
        len(ModelMetadata.from_dict({**base, "labels": list(range(MAX_CLASSES))}).labels)
        == MAX_CLASSES
    )


# ------------------------------------------------------------------------ 4. no echo


def test_a_malformed_output_is_described_not_quoted() -> None:
    with pytest.raises(ModelError) as info:
        scored(answer(infer([0.5, 0.5], shape=SECRET_BODY)))
    assert "not an Open Inference response" in info.value.message
    assert SECRET_BODY not in info.value.message


def test_a_text_output_is_refused_without_quoting_it() -> None:
    text = base64.b64encode(SECRET_BODY.encode()).decode()
    with pytest.raises(ModelError) as info:
        scored(answer(infer([text, text], datatype="BYTES")))
    assert SECRET_BODY not in info.value.message and "not numeric" in info.value.message


def test_a_bad_published_input_is_described_not_quoted() -> None:
    bad = {**LIMNER_MODEL, "input": {"width": SECRET_BODY, "height": 8}}
    with (
        stand_in({"GET /v2/models/m": answer(metadata(bad))}) as base,
        pytest.raises(ModelError) as info,
    ):
        deploy(base)
    assert "'width'" in info.value.message and SECRET_BODY not in info.value.message


# ------------------------------------------------------------------------ 5. the URL policy's paths

POLICY = UrlPolicy.parse("http://127.0.0.1:9000/v2/")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/%2e%2e/admin",
        "/v2/%2E%2E/admin",
        "/v2/.%2e/admin",
        "/v2/../admin",
        "/v2/models/%2e%2e/%2e%2e/admin",
        "/v2/..;/admin",
        "/v2/models%2f..%2f..%2fadmin",
        "/v2/%2F/x",
        "/v2/%5c../admin",
        "/v2/%252e%252e/admin",
        "/v2\\..\\admin",
    ],
)
def test_encoded_dot_segments_and_separators_leave_the_allowed_prefix(path: str) -> None:
    url = f"http://127.0.0.1:9000{path}"
    assert not POLICY.lists(url)
    with pytest.raises(UrlNotAllowedError):
        POLICY.check(url)


def test_paths_that_stay_under_the_prefix_are_still_allowed() -> None:
    for path in (
        "/v2/models/a",
        "/v2/models/a/./infer",
        "/v2/models/x/../a",
        "/v2/models/a.b",
        "/v2/",
    ):
        POLICY.check(f"http://127.0.0.1:9000{path}")
        assert POLICY.lists(f"http://127.0.0.1:9000{path}"), path


# ------------------------------------------------------------------------ 6. values


@pytest.mark.parametrize(
    "text",
    ["[NaN, 0.5]", "[Infinity, 0.0]", "[1.7, -0.7]"],
    ids=["nan", "infinity", "outside-0-1"],
)
def test_scores_that_are_not_probabilities_are_a_model_error(text: str) -> None:
    body = json.dumps(infer("DATA")).replace('"DATA"', text)
    with pytest.raises(ModelError, match=r"NaN or infinite|outside \[0, 1\]") as info:
        scored(answer(None, text=body))
    assert 400 <= info.value.status < 500 and SECRET_BODY not in info.value.message


def test_any_model_with_non_finite_output_is_a_model_error() -> None:
    meta = ModelMetadata.from_dict({**LIMNER_MODEL, "output": "logits"})
    nan = CallableModel(lambda x: np.full((len(x), 2), np.nan, np.float32), meta)
    with pytest.raises(ModelError, match="NaN or infinite"):
        nan.predict(IMAGE)
    sure = CallableModel(
        lambda x: np.array([[0.0, 1.0000001]] * len(x), np.float32),
        ModelMetadata.from_dict(LIMNER_MODEL),
    )
    assert sure.predict(IMAGE).max() <= 1.0  # rounding over 1 is clipped, not refused
