"""Smaller leaks between spaces, through a real ``limner serve``: scoring ids scoped to their
space (no oracle, no squatting), ``/metrics`` keyed and filtered per space (the operator's own
port shows all), key guessing slowed per client address, and a data directory that only the
server's user can read."""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from limits_helpers import Server, free_port, limner_serve, solid_png

from limner.models.zoo import efficientnet_lite0_metadata, efficientnet_lite0_onnx
from limner.store import Database, space_for_key

pytestmark = pytest.mark.slow

METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("leaks")
    with limner_serve(tmp, LIMNER_METRICS_PORT=str(METRICS_PORT)) as srv:
        srv.keys["other"] = srv.new_key("other")
        yield srv


def _space_id(server: Server, key: str) -> str:
    db = Database(f"sqlite:///{server.data_dir / 'limner.db'}")
    try:
        space = space_for_key(db, key)
    finally:
        db.close()
    assert space is not None
    return space.id


def _subscription(http: httpx.Client, name: str) -> str:
    r = http.post(
        "/v1/subscriptions",
        json={
            "name": name,
            "scoring_url": f"http://{name}.invalid/v2/models/m",
            "labels": ["a", "b"],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _record(scoring_id: str, p: float, side: int) -> dict[str, object]:
    image = base64.b64encode(solid_png(side, side)).decode()
    return {"scoring_id": scoring_id, "image": image, "probabilities": [1 - p, p]}


def _log(http: httpx.Client, sub: str, record: dict[str, object]) -> httpx.Response:
    return http.post(f"/v1/subscriptions/{sub}/payload-records", json={"records": [record]})


def test_two_spaces_may_use_the_same_scoring_id_without_learning_of_each_other(
    server: Server,
) -> None:
    with server.http() as mine, server.http(server.keys["other"]) as theirs:
        my_sub = _subscription(mine, "mine")
        their_sub = _subscription(theirs, "theirs")
        assert _log(mine, my_sub, _record("shared-1", 0.9, 20)).json()["records"] == [
            {"scoring_id": "shared-1", "created": True}
        ]
        # Another space's id is just a new record here: no 409, nothing to tell it is used.
        first = _log(theirs, their_sub, _record("shared-1", 0.2, 30))
        assert first.status_code == 200, first.text
        assert first.json()["records"] == [{"scoring_id": "shared-1", "created": True}]
        again = _log(theirs, their_sub, _record("shared-1", 0.2, 30))
        assert again.json()["records"] == [{"scoring_id": "shared-1", "created": False}]
        # Another subscription of the same space: the caller's own conflict, still 409.
        my_second = _subscription(mine, "second")
        assert _log(mine, my_second, _record("shared-1", 0.5, 20)).status_code == 409

        mine_tx = mine.get("/v1/transactions/shared-1").json()
        theirs_tx = theirs.get("/v1/transactions/shared-1").json()
        assert (mine_tx["label"], mine_tx["width"]) == ("b", 20)
        assert (theirs_tx["label"], theirs_tx["width"]) == ("a", 30)
        assert mine.get("/v1/transactions/shared-1/image").content != (
            theirs.get("/v1/transactions/shared-1/image").content
        )
        answers = [
            mine_tx,
            theirs_tx,
            mine.get(f"/v1/subscriptions/{my_sub}/transactions").json(),
            theirs.get(f"/v1/subscriptions/{their_sub}/transactions").json(),
        ]
        on = mine.put(f"/v1/subscriptions/{my_sub}/explainability", json={"enabled": True})
        assert on.status_code == 200
        queued = mine.post("/v1/explanations", json={"scoring_id": "shared-1"})
        assert queued.status_code == 202, queued.text
        assert queued.json()["scoring_id"] == "shared-1"
        answers += [queued.json(), mine.get("/v1/explanations").json()]
        listed = theirs.get("/v1/explanations", params={"scoring_id": "shared-1"}).json()
        assert listed["explanations"] == [] and listed["total"] == 0
        assert mine.get(f"/v1/explanations/{queued.json()['id']}").json()["scoring_id"] == (
            "shared-1"
        )
    with sqlite3.connect(server.data_dir / "limner.db") as db:
        rows = db.execute("SELECT id, scoring_id FROM transactions").fetchall()
    assert len(rows) == 2 and {sid for _, sid in rows} == {"shared-1"}
    internal = {tid for tid, _ in rows}
    assert "shared-1" not in internal  # the internal key is fresh, never the client's id
    text = json.dumps(answers)
    assert not any(tid in text for tid in internal)


def test_metrics_need_a_key_and_show_only_the_keys_space(server: Server) -> None:
    tenant = server.new_key("default")  # the first key is the operator's (admin)
    mine, theirs = _space_id(server, tenant), _space_id(server, server.keys["other"])
    with server.http(tenant) as http, server.http(server.keys["other"]) as other:
        http.get("/v1/deployments")
        other.get("/v1/deployments")
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        bad = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer lmn_nope"})
        assert bad.status_code == 401
        text = http.get("/metrics").text
    assert "limner_http_requests_total" in text
    assert f'space="{mine}"' in text
    assert theirs not in text and 'space=""' not in text
    with server.http() as admin:
        everything = admin.get("/metrics").text
    assert f'space="{mine}"' in everything and f'space="{theirs}"' in everything
    operator = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics").text
    assert f'space="{mine}"' in operator and f'space="{theirs}"' in operator


def test_key_guessing_is_slowed_per_client_address(server: Server) -> None:
    guesser = httpx.Client(
        base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    with guesser:
        for i in range(10):
            r = guesser.get("/v1/deployments", headers={"Authorization": f"Bearer lmn_guess{i}"})
            assert r.status_code == 401
        blocked = guesser.get("/v1/deployments", headers={"Authorization": "Bearer lmn_guess"})
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        # While blocked, even a right key is not checked: the answer tells nothing.
        assert guesser.get("/v1/deployments", headers=server.auth()).status_code == 429
    # Another address, and the right key from it, are unaffected.
    with server.http() as http:
        assert http.get("/v1/deployments").status_code == 200
        wrong = httpx.get(f"{server.url}/v1/deployments", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401


def test_the_data_directory_is_private_to_the_servers_user(server: Server, tmp_path: Path) -> None:
    meta = efficientnet_lite0_metadata().to_dict()
    with server.http() as http, efficientnet_lite0_onnx().open("rb") as onnx:
        r = http.post(
            "/v1/deployments",
            data={"name": "uploaded", "metadata": json.dumps(meta)},
            files={"file": ("model.onnx", onnx, "application/octet-stream")},
        )
        assert r.status_code == 201, r.text
    root = server.data_dir
    paths = [root, *root.rglob("*")]
    kinds = {p.relative_to(root).parts[0] if p != root else "" for p in paths}
    assert {"limner.db", "blobs", "models"} <= kinds
    assert (root / "limner.db-wal").exists()
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path.relative_to(root)} is {oct(mode)}"
