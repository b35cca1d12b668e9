"""Attacks by a tenant key on a real ``limner serve``: each is refused with a clean 4xx error and
leaves the server's files, its internal services and other spaces untouched. Beside each attack,
the legitimate use that must keep working."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sec_helpers import (
    QUOTA_BYTES,
    SECRET_BODY,
    TINY_META,
    Serve,
    deploy,
    error_of,
    free_port,
    model_zip,
    recorder,
    tiny_onnx,
)

from limner.imaging import encode_png

pytestmark = pytest.mark.slow

BRIGHT = encode_png(np.full((8, 8, 3), 230, np.uint8))


class FileThief(torch.nn.Module):
    """What an attacker uploads: ``forward`` reads a server file and overwrites it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stolen = torch.from_file(self.path, shared=False, size=8, dtype=torch.uint8)
        target = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8)
        target.copy_(torch.zeros(8, dtype=torch.uint8))
        return stolen[:2].float().unsqueeze(0).repeat(x.shape[0], 1)


class Brightness(torch.nn.Module):
    """An honest TorchScript classifier of 8×8 images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1) * 8.0


def _torchscript(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def _upload(http: httpx.Client, name: str, archive: Path, **kwargs: object) -> httpx.Response:
    with archive.open("rb") as f:
        return deploy(http, data={"name": name}, files={"file": (archive.name, f.read())}, **kwargs)


def _score(http: httpx.Client, dep_id: str) -> httpx.Response:
    return http.post(
        f"/v1/deployments/{dep_id}/predictions",
        json={"images": [base64.b64encode(BRIGHT).decode()]},
    )


def _no_upload_left(server: Serve, before: list[Path]) -> None:
    assert server.uploads() == before, "a refused upload left files behind"


# --------------------------------------------------------------------------- models that are code


def test_tenant_torchscript_that_reads_server_files_is_refused(server: Serve, tmp_path: Path):
    canary = tmp_path / "canary.secret"
    canary.write_bytes(b"CANARY-SECRET-0123456789")
    stamp = canary.stat().st_mtime_ns
    pt = _torchscript(FileThief(str(canary)), tmp_path / "model.pt")
    meta = {**TINY_META, "artifact": "model.pt", "output": "logits"}  # it returns logits
    before = server.uploads()
    with server.http(server.tenant_key("thieves")) as http:
        body = error_of(
            _upload(http, "thief", model_zip(tmp_path / "m.zip", {"model.pt": pt}, meta)), 403
        )
        assert "admin" in body["message"] and "torchscript" in body["message"].lower()
        # the same file under an innocent name is not loaded as ONNX either
        renamed = model_zip(tmp_path / "r.zip", {"model.onnx": pt})
        error_of(_upload(http, "thief2", renamed), 422)
        error_of(
            deploy(http, data={"name": "x"}, files={"file": ("model.pt", pt.read_bytes())}), 415
        )
    assert canary.read_bytes() == b"CANARY-SECRET-0123456789"
    assert canary.stat().st_mtime_ns == stamp
    _no_upload_left(server, before)


def test_tenant_pickles_are_refused(server: Serve, tmp_path: Path) -> None:
    for artifact in ("model.pkl", "pytorch_model.bin", "model.pth", "model.h5"):
        archive = model_zip(
            tmp_path / "p.zip", {artifact: b"\x80\x04K\x01."}, {**TINY_META, "artifact": artifact}
        )
        with server.http(server.tenant_key("picklers")) as http:
            error_of(_upload(http, "pickle", archive), 403)


def test_admin_still_deploys_torchscript(server: Serve, tmp_path: Path) -> None:
    pt = _torchscript(Brightness(), tmp_path / "model.pt")
    meta = {**TINY_META, "artifact": "model.pt", "output": "logits"}  # it returns logits
    with server.http(server.admin_key) as http:
        resp = _upload(http, "scripted", model_zip(tmp_path / "ok.zip", {"model.pt": pt}, meta))
        assert resp.status_code == 201, resp.text
        dep = resp.json()
        assert dep["model"] == "upload:model.pt"
        scored = _score(http, dep["id"])
        assert scored.status_code == 200 and scored.json()["predictions"][0]["label"] == "bright"
        assert http.delete(f"/v1/deployments/{dep['id']}").status_code == 204


def test_onnx_with_a_custom_operator_domain_is_refused(server: Serve, tmp_path: Path) -> None:
    custom = tiny_onnx(tmp_path / "model.onnx", domain="evil.ops")
    with server.http(server.tenant_key("custom-ops")) as http:
        resp = deploy(
            http,
            data={"name": "custom", "metadata": json.dumps(TINY_META)},
            files={"file": ("model.onnx", custom.read_bytes())},
        )
        assert "evil.ops" in error_of(resp, 403)["message"]


def test_metadata_claiming_a_huge_input_is_refused(server: Serve, tmp_path: Path) -> None:
    """A batch of perturbed inputs at a size the metadata names could exhaust the server."""
    onnx = tiny_onnx(tmp_path / "model.onnx")
    huge = {**TINY_META, "input": {**TINY_META["input"], "width": 100_000, "height": 100_000}}
    with server.http(server.tenant_key("huge-input")) as http:
        resp = deploy(
            http,
            data={"name": "huge", "metadata": json.dumps(huge)},
            files={"file": ("model.onnx", onnx.read_bytes())},
        )
        assert "pixels" in error_of(resp, 422)["message"]
        assert all(d["name"] != "huge" for d in http.get("/v1/deployments").json()["deployments"])


# --------------------------------------------------------------------------- SSRF


def test_scoring_url_to_an_internal_service_is_refused(server: Serve) -> None:
    with recorder() as rec, server.http(server.tenant_key("ssrf-sub")) as http:
        body = {"name": "internal", "labels": ["a", "b"]}
        literal = http.post(
            "/v1/subscriptions", json={**body, "scoring_url": f"{rec.url}/v2/models/x"}
        )
        error_of(literal, 403)
        # a name that resolves to loopback passes the first look; the connection is refused
        sub = http.post(
            "/v1/subscriptions",
            json={**body, "scoring_url": f"http://localhost:{rec.port}/v2/models/x"},
        )
        assert sub.status_code == 201, sub.text
        sub_id = sub.json()["id"]
        image = base64.b64encode(BRIGHT).decode()
        records = http.post(
            f"/v1/subscriptions/{sub_id}/payload-records",
            json={"records": [{"image": image, "probabilities": [0.5, 0.5]}]},
        ).json()["records"]
        http.put(
            f"/v1/subscriptions/{sub_id}/explainability",
            json={"enabled": True, "samples": 16, "segmentation": "grid", "segments": 4},
        )
        job = http.post("/v1/explanations", json={"scoring_id": records[0]["scoring_id"]}).json()
        deadline = time.monotonic() + 60
        while (exp := http.get(f"/v1/explanations/{job['id']}").json())["status"] not in (
            "finished",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert exp["status"] == "failed"
        assert "not allowed" in exp["error"] and SECRET_BODY not in exp["error"]
        assert rec.seen == []


def test_model_url_to_internal_ports_is_refused_alike_open_or_closed(server: Serve) -> None:
    with recorder() as rec, server.http(server.tenant_key("ssrf-model")) as http:
        closed = free_port()
        messages = {}
        for label, url in {
            "open": f"http://localhost:{rec.port}/v2/models/x",
            "closed": f"http://localhost:{closed}/v2/models/x",
        }.items():
            messages[label] = error_of(deploy(http, json={"name": label, "model": url}), 403)
        assert messages["open"] == messages["closed"]
        for url in (
            f"{rec.url}/v2/models/x",
            f"http://[::ffff:127.0.0.1]:{rec.port}/v2/models/x",
            f"http://0.0.0.0:{rec.port}/v2/models/x",
            f"http://user:pw@localhost:{rec.port}/v2/models/x",
        ):
            body = error_of(deploy(http, json={"name": "lit", "model": url}), 403)
            assert SECRET_BODY not in body["message"]
        assert rec.seen == []


def test_operator_allowed_loopback_model_works_for_a_tenant(server: Serve, remote: str) -> None:
    with server.http(server.tenant_key("remote-user")) as http:
        url = f"{remote}/v2/models/bright"
        resp = deploy(http, json={"name": "bright", "model": url})
        assert resp.status_code == 201, resp.text
        assert resp.json()["model"] == url
        scored = _score(http, resp.json()["id"])
        assert scored.status_code == 200 and scored.json()["predictions"][0]["label"] == "bright"


# --------------------------------------------------------------------------- server paths


def test_server_paths_are_refused_alike_whether_they_exist_or_not(
    server: Serve, tmp_path: Path, roots: Path
) -> None:
    onnx = tiny_onnx(tmp_path / "model.onnx")
    with server.http(server.tenant_key("victim")) as victim:
        resp = deploy(
            victim,
            data={"name": "private", "metadata": json.dumps(TINY_META)},
            files={"file": ("model.onnx", onnx.read_bytes())},
        )
        assert resp.status_code == 201, resp.text
        victim_dir = server.data_dir / "models" / resp.json()["id"]
        assert victim_dir.is_dir()
    paths = [
        str(victim_dir),
        "/etc",
        "/etc/passwd",
        str(server.data_dir / "limner.db"),
        "/no/such/dir",
    ]
    with server.http(server.tenant_key("attacker")) as http:
        tenant = {p: error_of(deploy(http, json={"name": "p", "model": p}), 403) for p in paths}
    with server.http(server.admin_key) as http:
        admin = {p: error_of(deploy(http, json={"name": "p", "model": p}), 403) for p in paths}
        inside = deploy(http, json={"name": "rooted", "model": str(roots / "tiny")})
        assert inside.status_code == 201, inside.text
        assert inside.json()["model"] == "server:tiny"
    for errors in (tenant, admin):
        assert len({e["message"] for e in errors.values()}) == 1, errors
        assert all(str(server.data_dir) not in e["message"] for e in errors.values())


def test_artifact_outside_the_upload_is_refused_alike(server: Serve, tmp_path: Path) -> None:
    onnx = tiny_onnx(tmp_path / "model.onnx")
    before = server.uploads()
    messages = []
    for key in (server.tenant_key("escapers"), server.admin_key):
        for artifact in ("../../limner.db", "../../no-such.onnx", "/etc/passwd"):
            meta = {**TINY_META, "artifact": artifact}
            archive = model_zip(tmp_path / "a.zip", {"model.onnx": onnx}, meta)
            with server.http(key) as http:
                messages.append(error_of(_upload(http, "escape", archive), 422)["message"])
    assert len(set(messages)) == 1
    _no_upload_left(server, before)


def test_no_response_shows_server_paths(server: Serve, tmp_path: Path) -> None:
    onnx = tiny_onnx(tmp_path / "model.onnx")
    with server.http(server.tenant_key("listing")) as http:
        resp = deploy(
            http,
            data={"name": "up", "metadata": json.dumps(TINY_META)},
            files={"file": ("model.onnx", onnx.read_bytes())},
        )
        assert resp.json()["model"] == "upload:model.onnx"
        zipped = _upload(
            http,
            "zipped",
            model_zip(
                tmp_path / "z.zip",
                {"sub/model.onnx": onnx},
                {**TINY_META, "artifact": "sub/model.onnx"},
            ),
        )
        assert zipped.json()["model"] == "upload:sub/model.onnx"
        listing = (
            http.get("/v1/deployments").text + http.get(f"/v2/models/{resp.json()['id']}").text
        )
        assert str(server.data_dir.resolve()) not in listing, listing
        assert str(server.data_dir) not in listing, listing


# --------------------------------------------------------------------------- zips and quota


def test_zip_bomb_is_refused_and_leaves_nothing(server: Serve, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    zeros = bytes(16 * 1024 * 1024)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("limner-model.json", json.dumps(TINY_META))
        with z.open("model.onnx", "w", force_zip64=True) as member:
            for _ in range(64):  # 1 GiB of zeros
                member.write(zeros)
    assert bomb.stat().st_size < 8 * 1024 * 1024
    before = server.uploads()
    with server.http(server.tenant_key("bombers")) as http:
        assert "LIMNER_MAX_UNPACKED_BYTES" in error_of(_upload(http, "bomb", bomb), 413)["message"]
    _no_upload_left(server, before)


def test_zip_that_lies_about_its_sizes_is_refused(server: Serve, tmp_path: Path) -> None:
    """Declared sizes say 1 KB; the member inflates to 32 MB (over the space's quota)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("limner-model.json", json.dumps(TINY_META))
        z.writestr("model.onnx", bytes(32 * 1024 * 1024))
    data = bytearray(buf.getvalue())
    _patch_sizes(data, "model.onnx", 1024)
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    assert zipfile.ZipFile(liar).getinfo("model.onnx").file_size == 1024
    before = server.uploads()
    with server.http(server.tenant_key("liars")) as http:
        resp = _upload(http, "liar", liar)
        assert resp.status_code in (413, 422), resp.text
        error_of(resp, resp.status_code)
    _no_upload_left(server, before)


def _patch_sizes(data: bytearray, name: str, size: int) -> None:
    """Write ``size`` as the uncompressed size of ``name`` in the local and central headers."""
    raw = name.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := data.find(signature, at)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(raw)] == raw:
                struct.pack_into("<I", data, at + offset, size)
            at += 4


def test_zip_with_a_wrong_checksum_is_422(server: Serve, tmp_path: Path) -> None:
    onnx = tiny_onnx(tmp_path / "model.onnx").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("limner-model.json", json.dumps(TINY_META))
        z.writestr("model.onnx", onnx)
    data = bytearray(buf.getvalue())
    at = data.find(onnx[:64])
    data[at + 40] ^= 0xFF
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    before = server.uploads()
    with server.http(server.tenant_key("crc")) as http:
        assert "checksum" in error_of(_upload(http, "crc", bad), 422)["message"]
    _no_upload_left(server, before)


def test_space_quota_is_enforced(server: Serve, tmp_path: Path) -> None:
    big = tiny_onnx(tmp_path / "model.onnx", padding_bytes=QUOTA_BYTES // 3).read_bytes()
    meta = json.dumps(TINY_META)
    with server.http(server.tenant_key("hoarder")) as http:
        ids = []
        for i in range(2):
            resp = deploy(
                http, data={"name": f"m{i}", "metadata": meta}, files={"file": ("model.onnx", big)}
            )
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        full = deploy(
            http, data={"name": "m2", "metadata": meta}, files={"file": ("model.onnx", big)}
        )
        assert "quota" in error_of(full, 413)["message"]
        with server.http(server.tenant_key("neighbour")) as other:  # other spaces are not affected
            resp = deploy(
                other, data={"name": "n", "metadata": meta}, files={"file": ("model.onnx", big)}
            )
            assert resp.status_code == 201, resp.text
        assert http.delete(f"/v1/deployments/{ids[0]}").status_code == 204
        again = deploy(
            http, data={"name": "m2", "metadata": meta}, files={"file": ("model.onnx", big)}
        )
        assert again.status_code == 201, again.text


# --------------------------------------------------------------------------- starvation


def test_slow_model_loads_do_not_starve_health_and_scoring(
    server: Serve, remote: str, tmp_path: Path
) -> None:
    onnx = tiny_onnx(tmp_path / "model.onnx")
    key = server.tenant_key("starver")
    with server.http(key) as http:
        resp = deploy(
            http,
            data={"name": "fast", "metadata": json.dumps(TINY_META)},
            files={"file": ("model.onnx", onnx.read_bytes())},
        )
        fast = resp.json()["id"]
        assert _score(http, fast).status_code == 200

    deployer = server.http(key)  # one client for all (building 16 would load the CA bundle 16×)

    def slow_deploy(i: int) -> httpx.Response:
        return deployer.post(
            "/v1/deployments", json={"name": f"slow{i}", "model": f"{remote}/v2/models/slow"}
        )

    with ThreadPoolExecutor(16) as pool, server.http(key, timeout=10) as http, deployer:
        futures = [pool.submit(slow_deploy, i) for i in range(16)]
        time.sleep(0.5)
        worst = 0.0
        while not all(f.done() for f in futures):
            for probe in (lambda: httpx.get(f"{server.url}/healthz"), lambda: _score(http, fast)):
                started = time.perf_counter()
                assert probe().status_code == 200
                worst = max(worst, time.perf_counter() - started)
            time.sleep(0.1)
        answers = [f.result() for f in futures]
    assert worst < 1.0, f"health and scoring waited {worst:.2f} s behind model loads"
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {201, 503} and 201 in codes and 503 in codes, codes
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "busy" and int(r.headers["retry-after"]) >= 1


def test_model_load_runs_with_a_time_limit(server: Serve, remote: str) -> None:
    with server.http(server.tenant_key("hangers")) as http:
        resp = deploy(http, json={"name": "hang", "model": f"{remote}/v2/models/hang"})
        assert error_of(resp, 503)["code"] == "model_unavailable"
        assert http.get("/v1/deployments").json() == {"deployments": []}
