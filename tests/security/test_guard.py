"""The outbound guard (:mod:`limner.net`) and the tenant format policy, tested directly.

Addresses other than loopback are only ever given to the decision functions, never connected
to; refusals are exercised with loopback targets and ``.invalid`` names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest
from sec_helpers import SECRET_BODY, TINY_META, recorder, tiny_onnx

from limner.errors import ForbiddenError, InvalidInputError, ModelError
from limner.models.policy import check_tenant_model, model_format
from limner.models.remote import RemoteModel
from limner.net import UrlNotAllowedError, UrlPolicy, guarded_client, is_public_address

NOT_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.251",
    "240.0.0.1",
    "192.0.2.10",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "64:ff9b::a9fe:a9fe",
    "2001:db8::1",
    "not an address",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


def test_policy_prefixes_and_host_patterns() -> None:
    policy = UrlPolicy.parse("http://127.0.0.1:9000/v2/, https://models.example.org, *.corp.test")
    assert policy.lists("http://127.0.0.1:9000/v2/models/a")
    assert not policy.lists("http://127.0.0.1:9000/admin")
    assert not policy.lists("http://127.0.0.1:90001/v2/models/a")
    assert policy.lists("https://MODELS.example.org/anything")
    assert not policy.lists("https://models.example.org.evil.test/x")
    assert not policy.lists("http://models.example.org/x")  # another scheme, another port
    assert policy.lists("https://a.corp.test:8443/x") and not policy.lists("https://corp.test/x")


def test_policy_refuses_literal_internal_addresses_before_connecting() -> None:
    policy = UrlPolicy()
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3:8080/v2/models/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0:80/x",
        "ftp://example.org/x",
        "http://user:secret@example.org/x",
    ):
        with pytest.raises(UrlNotAllowedError):
            policy.check(url)
    policy.check("https://example.org/v2/models/x")  # a name: checked when connecting
    UrlPolicy.parse("10.1.2.3").check("http://10.1.2.3:8080/v2/models/x")  # listed


def test_guarded_client_refuses_names_of_internal_addresses_alike() -> None:
    with recorder() as rec, guarded_client(UrlPolicy(), timeout=5) as client:
        errors = []
        for url in (
            f"http://localhost:{rec.port}/v2/models/x",  # open port
            "http://localhost:9/v2/models/x",  # closed port
            "http://nothing-here.invalid/v2/models/x",  # does not resolve
        ):
            with pytest.raises(UrlNotAllowedError) as info:
                client.get(url)
            errors.append(str(info.value).replace("nothing-here.invalid", "localhost"))
        assert len(set(errors)) == 1 and rec.seen == []


def test_guarded_client_calls_listed_urls_and_follows_no_redirect() -> None:
    with recorder() as target, recorder(redirect_to=f"{target.url}/stolen") as rec:
        policy = UrlPolicy.parse(f"{rec.url}/, {target.url}/")
        with guarded_client(policy, timeout=5) as client:
            answer = client.get(f"{rec.url}/v2/models/x")
        assert answer.status_code == 302 and rec.seen == ["GET /v2/models/x"]
        with pytest.raises(ModelError) as info:  # a real adapter: the status, never the body
            RemoteModel(f"{rec.url}/v2/models/x", client=guarded_client(policy, timeout=5))
        assert "answered 302" in str(info.value) and SECRET_BODY not in str(info.value)
        assert target.seen == []


def test_guard_ignores_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with recorder() as rec:
        monkeypatch.setenv("HTTP_PROXY", rec.url)
        monkeypatch.setenv("ALL_PROXY", rec.url)
        with guarded_client(UrlPolicy(), timeout=5) as client, pytest.raises(UrlNotAllowedError):
            client.get("http://localhost:9/x")
        assert rec.seen == []


# --------------------------------------------------------------------------- the format policy


def _model_dir(tmp_path: Path, artifact: str, content: bytes) -> Path:
    (tmp_path / artifact).write_bytes(content)
    (tmp_path / "limner-model.json").write_text(json.dumps({**TINY_META, "artifact": artifact}))
    return tmp_path


@pytest.mark.parametrize("artifact", ["model.pt", "model.pth", "model.pkl", "weights.bin", "m.h5"])
def test_code_carrying_formats_are_admin_only(tmp_path: Path, artifact: str) -> None:
    with pytest.raises(ForbiddenError, match="admin key"):
        check_tenant_model(_model_dir(tmp_path, artifact, b"\x80\x04K\x01."))


def test_onnx_external_data_must_stay_inside_the_upload(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "model.onnx")
    assert check_tenant_model(path) == "onnx"
    model = onnx.load(str(path))
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for location in ("../../etc/passwd", "/etc/passwd"):
        del weight.external_data[:]
        weight.external_data.add(key="location", value=location)
        onnx.save(model, str(path))
        with pytest.raises(ForbiddenError, match="external data"):
            check_tenant_model(path)


def test_onnx_custom_domains_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ForbiddenError, match="custom domain"):
        check_tenant_model(tiny_onnx(tmp_path / "model.onnx", domain="com.attacker"))


def test_artifact_must_stay_inside_the_model_directory(tmp_path: Path) -> None:
    for artifact in ("../model.onnx", "/etc/passwd", "a/../../b.onnx"):
        (tmp_path / "limner-model.json").write_text(json.dumps({**TINY_META, "artifact": artifact}))
        with pytest.raises(InvalidInputError, match="inside the model directory"):
            model_format(tmp_path)


def test_keras_lambda_layers_are_refused(tmp_path: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "model.keras")
    with pytest.raises(ForbiddenError, match="Lambda"):
        check_tenant_model(tmp_path / "model.keras")
