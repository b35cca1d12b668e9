"""Tenant caps: a model's input dtype, the size and parsing of JSON deploy bodies, and the
storage that transaction images take (deleted with their subscription, counted in the quota).

Each test is an attack that worked before the cap: a metadata file choosing a 4 MB-an-element
input tensor, a 512 MB JSON body parsed on the event loop, images kept (and uncounted) after
their subscription was deleted. The service runs in process (no memory is measured here).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sec_helpers import TINY_META, error_of, tiny_onnx
from sqlalchemy import select

from limner.errors import InvalidInputError
from limner.imaging import encode_png
from limner.models import metadata
from limner.models.metadata import InputSpec, ModelMetadata
from limner.service import create_app
from limner.settings import Settings
from limner.store import Database, Explanation, Space, Transaction, blobs, create_key, new_id
from limner.store.blobs import LocalBlobStore

#: The request-body limit of these tests (JSON deploy bodies must keep it).
MAX_BODY = 2 * 1024 * 1024
#: The upload limit (multipart model uploads only).
MAX_UPLOAD = 16 * 1024 * 1024
#: Each space's storage: some 40 of the noise images below (and a tiny model, as loaded).
QUOTA = 32_000_000
#: Where the external subscriptions of these tests say they score (never contacted).
SCORING_URL = "http://127.0.0.1:9/v2/models/ext"


@dataclass
class Service:
    """The app under test, its settings and a way to make keys."""

    client: TestClient
    settings: Settings

    def key(self, space: str) -> dict[str, str]:
        """Authorization headers of a new tenant key of ``space``."""
        db = Database(self.settings.resolved_database_url())
        try:
            return {"Authorization": f"Bearer {create_key(db, space)}"}
        finally:
            db.close()

    @property
    def blobs(self) -> LocalBlobStore:
        return LocalBlobStore(self.settings.resolved_blob_url())

    def db(self) -> Database:
        return Database(self.settings.resolved_database_url())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("caps"),
        database_url="",
        workers=2,
        max_body_bytes=MAX_BODY,
        max_upload_bytes=MAX_UPLOAD,
        space_quota_bytes=QUOTA,
        allowed_urls="http://127.0.0.1:9/",
    )
    db = Database(settings.resolved_database_url())
    db.migrate()
    db.close()
    with TestClient(create_app(settings)) as client:
        yield Service(client, settings)


def noise_png(seed: int, side: int = 512) -> bytes:
    """A PNG that does not compress: about ``3 * side**2`` bytes, different for each seed."""
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def external(service: Service, auth: dict[str, str], name: str) -> str:
    """A new external subscription of the key's space; its id."""
    resp = service.client.post(
        "/v1/subscriptions",
        headers=auth,
        json={"name": name, "scoring_url": SCORING_URL, "labels": ["no", "yes"]},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def log(service: Service, auth: dict[str, str], sub: str, image: bytes, sid: str) -> Any:
    return service.client.post(
        f"/v1/subscriptions/{sub}/payload-records",
        headers=auth,
        json={
            "records": [
                {
                    "scoring_id": sid,
                    "image": base64.b64encode(image).decode(),
                    "probabilities": [0.3, 0.7],
                }
            ]
        },
    )


def key_of(image: bytes) -> str:
    """The blob key of ``image``."""
    return hashlib.sha256(image).hexdigest()


def upload(
    service: Service, auth: dict[str, str], name: str, onnx: bytes, meta: dict[str, Any]
) -> Any:
    return service.client.post(
        "/v1/deployments",
        headers=auth,
        data={"name": name, "metadata": json.dumps(meta)},
        files={"file": ("model.onnx", onnx)},
    )


# --------------------------------------------------------------------------- input dtype


@pytest.mark.parametrize(
    "dtype", ["S4000000", "U1000000", "V8", "O", "object", "(100000,)f8", "i8,i8", ">f4", "bool"]
)
def test_metadata_refuses_input_dtypes_off_the_list(dtype: str, tmp_path: Path) -> None:
    """``"S4000000"`` made one 8×8 image a 1.46 GB tensor; only numeric dtypes are read."""
    meta = {**TINY_META, "input": {**TINY_META["input"], "dtype": dtype}}
    with pytest.raises(InvalidInputError) as caught:
        ModelMetadata.from_dict(meta)
    assert caught.value.status == 422
    assert "dtype" in caught.value.message and "float32" in caught.value.message
    path = tmp_path / "limner-model.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError):
        ModelMetadata.read(path)
    with pytest.raises(InvalidInputError):
        InputSpec(width=8, height=8, dtype=dtype)


def test_metadata_takes_every_listed_dtype_and_numpy_aliases() -> None:
    for dtype in metadata.INPUT_DTYPES:
        assert InputSpec(width=8, height=8, dtype=dtype).dtype == dtype
    assert InputSpec(width=8, height=8, dtype="f4").dtype == "float32"
    assert InputSpec(width=8, height=8, dtype="u1").dtype == "uint8"
    x = InputSpec(width=2, height=2, dtype="float16").preprocess(np.zeros((1, 2, 2, 3), np.uint8))
    assert x.dtype == np.float16 and x.nbytes == 24


def test_upload_with_a_huge_input_dtype_is_422(service: Service, tmp_path: Path) -> None:
    onnx = tiny_onnx(tmp_path / "model.onnx").read_bytes()
    meta = {**TINY_META, "input": {**TINY_META["input"], "dtype": "S4000000"}}
    resp = upload(service, service.key("dtype"), "huge", onnx, meta)
    assert "dtype" in error_of(resp, 422)["message"]


# --------------------------------------------------------------------------- JSON bodies


def test_json_deploy_body_keeps_the_request_body_limit(service: Service) -> None:
    """The upload limit (512 MB by default) applied to JSON bodies too: read whole, parsed."""
    body = json.dumps({"name": "big", "model": "x", "labels": ["a" * 1000] * (MAX_BODY // 900)})
    assert MAX_BODY < len(body) < MAX_UPLOAD
    auth = service.key("json-cap")
    resp = service.client.post(
        "/v1/deployments", headers={**auth, "Content-Type": "application/json"}, content=body
    )
    assert error_of(resp, 413)["code"] == "payload_too_large"
    # no content type (read as JSON by the route) and a streamed body without a length
    resp = service.client.post("/v1/deployments", headers=auth, content=iter([body.encode()]))
    assert error_of(resp, 413)["code"] == "payload_too_large"


def test_a_second_content_type_does_not_buy_the_upload_limit(service: Service) -> None:
    """The route reads the first Content-Type; the limit must be chosen from the same one."""
    body = json.dumps({"name": "dup", "model": "x", "pad": "a" * (MAX_BODY + 1024)})
    headers = [
        *service.key("json-dup").items(),
        ("content-type", "application/json"),
        ("content-type", "multipart/form-data; boundary=xyz"),
    ]
    resp = service.client.post("/v1/deployments", headers=headers, content=body)
    assert error_of(resp, 413)["code"] == "payload_too_large"


def test_multipart_uploads_keep_the_upload_limit(service: Service, tmp_path: Path) -> None:
    onnx = tiny_onnx(tmp_path / "model.onnx", padding_bytes=2 * MAX_BODY).read_bytes()
    assert len(onnx) > MAX_BODY
    resp = upload(service, service.key("uploader"), "padded", onnx, TINY_META)
    assert resp.status_code == 201, resp.text


def test_metadata_file_part_is_capped(service: Service, tmp_path: Path) -> None:
    """A ``metadata`` part sent as a file escaped the 8 MB form-field cap (read, then parsed)."""
    onnx = tiny_onnx(tmp_path / "model.onnx").read_bytes()
    resp = service.client.post(
        "/v1/deployments",
        headers=service.key("meta-file"),
        data={"name": "m"},
        files={
            "file": ("model.onnx", onnx),
            "metadata": ("limner-model.json", b"[" + b"1," * (4 * 1024 * 1024) + b"1]"),
        },
    )
    assert error_of(resp, 413)["code"] == "payload_too_large"


def test_json_bodies_are_parsed_off_the_event_loop(
    service: Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A large JSON body was parsed on the event loop: every request waited for it."""
    seen: list[bool] = []

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    class Recording:
        @staticmethod
        def loads(raw: Any, **kwargs: Any) -> Any:
            seen.append(on_loop())
            return json.loads(raw, **kwargs)

    import limner.service.bodies as bodies
    import limner.service.routers.deployments as routes

    monkeypatch.setattr(bodies, "json", Recording)
    monkeypatch.setattr(routes, "json", Recording)
    auth = service.key("parse")
    body = json.dumps({"name": "p", "model": "x", "pad": "a" * (MAX_BODY // 2)})
    resp = service.client.post(
        "/v1/deployments", headers={**auth, "Content-Type": "application/json"}, content=body
    )
    assert resp.status_code == 422, resp.text  # read and parsed: the field is unknown
    onnx = tiny_onnx(tmp_path / "model.onnx").read_bytes()
    meta = {**TINY_META, "name": "x" * (MAX_BODY // 2)}
    resp = upload(service, auth, "parsed", onnx, meta)
    assert resp.status_code == 201, resp.text
    assert seen and not any(seen), f"parsed on the event loop: {seen}"


# --------------------------------------------------------------------------- storage


def test_deleting_a_subscription_deletes_its_images_and_panes(service: Service) -> None:
    """Images and explanation panes stayed on disk after their subscription was deleted."""
    auth = service.key("deleter")
    sub = external(service, auth, "gone")
    images = [noise_png(100 + i, 32) for i in range(3)]
    for i, image in enumerate(images):
        assert log(service, auth, sub, image, f"d-{i}").status_code == 200
    pane = service.blobs.put(b"a pane of this subscription only")
    _explained(service, "deleter", "d-0", {"0/heatmap": pane, "1/heatmap": pane})
    assert all(service.blobs.exists(key_of(image)) for image in images)
    assert service.client.delete(f"/v1/subscriptions/{sub}", headers=auth).status_code == 204
    assert not any(service.blobs.exists(key_of(image)) for image in images)
    assert not service.blobs.exists(pane)


def test_a_shared_blob_stays_while_another_space_references_it(service: Service) -> None:
    """Blobs are content-addressed: deleting one space's copy must not break another's."""
    mine, theirs = service.key("share-a"), service.key("share-b")
    my_sub, their_sub = external(service, mine, "a"), external(service, theirs, "b")
    image = noise_png(7, 32)
    assert log(service, mine, my_sub, image, "s-1").status_code == 200
    assert log(service, theirs, their_sub, image, "s-1").status_code == 200
    # a pane both spaces' explanations drew, and a pane that is byte for byte an image
    shared_pane = service.blobs.put(b"a pane both spaces drew")
    _explained(service, "share-a", "s-1", {"0/heatmap": shared_pane, "1/heatmap": key_of(image)})
    _explained(service, "share-b", "s-1", {"0/heatmap": shared_pane})
    assert service.client.delete(f"/v1/subscriptions/{my_sub}", headers=mine).status_code == 204
    assert service.blobs.exists(key_of(image)) and service.blobs.exists(shared_pane)
    resp = service.client.get("/v1/transactions/s-1/image", headers=theirs)
    assert resp.status_code == 200 and resp.content == image
    assert (
        service.client.delete(f"/v1/subscriptions/{their_sub}", headers=theirs).status_code == 204
    )
    assert not service.blobs.exists(key_of(image)) and not service.blobs.exists(shared_pane)


def test_deleting_a_deployment_deletes_its_transaction_images(
    service: Service, tmp_path: Path
) -> None:
    auth = service.key("dep-deleter")
    onnx = tiny_onnx(tmp_path / "model.onnx").read_bytes()
    resp = upload(service, auth, "scored", onnx, TINY_META)
    assert resp.status_code == 201, resp.text
    dep = resp.json()["id"]
    resp = service.client.post("/v1/subscriptions", headers=auth, json={"deployment_id": dep})
    assert resp.status_code == 201, resp.text
    image = noise_png(11, 16)
    resp = service.client.post(
        f"/v1/deployments/{dep}/predictions",
        headers=auth,
        files={"file": ("x.png", image, "image/png")},
    )
    assert resp.status_code == 200, resp.text
    assert service.blobs.exists(key_of(image))
    assert service.client.delete(f"/v1/deployments/{dep}", headers=auth).status_code == 204
    assert not service.blobs.exists(key_of(image))
    assert stored_bytes(service, "dep-deleter") == 0


def test_transaction_images_count_against_the_space_quota(service: Service) -> None:
    """Images counted against no quota: one space could fill the disk by logging."""
    auth, neighbour = service.key("hoarder"), service.key("neighbour")
    sub = external(service, auth, "hoard")
    image_bytes = len(noise_png(0))
    fits = QUOTA // image_bytes
    for i in range(fits):
        resp = log(service, auth, sub, noise_png(1000 + i), f"h-{i}")
        assert resp.status_code == 200, resp.text
    full = log(service, auth, sub, noise_png(5000), "h-full")
    message = error_of(full, 413)["message"]
    assert "LIMNER_SPACE_QUOTA_BYTES" in message
    listed = service.client.get(f"/v1/subscriptions/{sub}/transactions", headers=auth).json()
    assert listed["total"] == fits  # the refused record was not logged
    # an idempotent retry of a record logged already is acknowledged, not refused
    again = log(service, auth, sub, noise_png(1000), "h-0")
    assert again.status_code == 200 and again.json()["records"][0]["created"] is False
    # another space is not affected
    other = external(service, neighbour, "n")
    assert log(service, neighbour, other, noise_png(5000), "n-1").status_code == 200
    assert stored_bytes(service, "hoarder") == sum(len(noise_png(1000 + i)) for i in range(fits))
    # deleting the subscription frees the room
    assert service.client.delete(f"/v1/subscriptions/{sub}", headers=auth).status_code == 204
    assert stored_bytes(service, "hoarder") == 0
    sub = external(service, auth, "hoard-again")
    assert log(service, auth, sub, noise_png(5000), "h-full").status_code == 200


def test_scoring_over_the_quota_is_refused(service: Service, tmp_path: Path) -> None:
    """Scoring a subscribed deployment logs its images: refused (413) once the quota is full."""
    auth = service.key("scorer")
    onnx = tiny_onnx(tmp_path / "model.onnx").read_bytes()
    resp = upload(service, auth, "s", onnx, TINY_META)
    assert resp.status_code == 201, resp.text
    dep = resp.json()["id"]
    assert service.client.post(
        "/v1/subscriptions", headers=auth, json={"deployment_id": dep}
    ).is_success
    statuses = []
    for i in range(QUOTA // len(noise_png(0)) + 2):
        resp = service.client.post(
            f"/v1/deployments/{dep}/predictions",
            headers=auth,
            files={"file": ("x.png", noise_png(9000 + i), "image/png")},
        )
        statuses.append(resp.status_code)
        if resp.status_code != 200:
            assert "LIMNER_SPACE_QUOTA_BYTES" in error_of(resp, 413)["message"]
            break
    assert statuses[-1] == 413 and set(statuses[:-1]) == {200}, statuses


def test_a_release_never_deletes_a_blob_a_new_row_is_about_to_reference(tmp_path: Path) -> None:
    """A writer's ``put`` finds the blob stored (a no-op), a release deletes it, then the
    writer's row goes in: :func:`referencing` stores the blob again."""
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"an image two spaces logged"
    since = blobs.releases()
    key = store.put(data)  # the writer: stored (already), its row not in yet
    rows: set[str] = set()
    assert blobs.release_blobs(store, [key], lambda batch: rows & set(batch)) == 1  # a release
    assert not store.exists(key)
    with blobs.referencing(store, {key: data}, since):
        rows.add(key)  # the writer's insert
    assert store.exists(key) and store.get(key) == data
    # a release that waits for the writer sees its row
    started = threading.Event()

    def writer() -> None:
        with blobs.referencing(store, {key: data}, blobs.releases()):
            started.set()
            rows.add("other")

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(5)
    assert blobs.release_blobs(store, [key], lambda batch: rows & set(batch)) == 0
    thread.join(5)
    assert store.exists(key)


def stored_bytes(service: Service, space: str) -> int:
    """What the space's transaction images count against its quota."""
    db = service.db()
    try:
        with db.session() as s:
            return int(s.scalars(select(Space.image_bytes).where(Space.name == space)).one())
    finally:
        db.close()


def _explained(service: Service, space: str, scoring_id: str, panes: dict[str, str]) -> None:
    """A finished explanation of the transaction ``scoring_id`` of ``space``, with these panes."""
    db = service.db()
    try:
        with db.session() as s:
            tx = s.scalars(
                select(Transaction)
                .join(Space, Space.id == Transaction.space_id)
                .where(Space.name == space, Transaction.scoring_id == scoring_id)
            ).one()
            s.add(
                Explanation(
                    id=new_id(),
                    space_id=tx.space_id,
                    transaction_id=tx.id,
                    status="done",
                    settings={},
                    panes=panes,
                )
            )
    finally:
        db.close()
