"""Archives are archives, and the Hugging Face Hub stays offline.

A ``.keras`` upload is a zip: its members are counted and sized like a ``.zip``'s before
anything reads them, its ``config.json`` is capped, the quota counts what it unpacks to, and a
tenant's archive holds only what Keras itself writes (Keras extracts anything more to a
temporary folder while loading). Keras' refused layers are refused however they are spelt. A
tenant's Hugging Face configuration cannot make transformers call the Hub (a stand-in Hub on
loopback sees no request), nor name pickled shards. Errors name the upload's own files, never
the server's folders.

The attacks run against a real ``limner serve`` with small limits; the checks of single
functions run in-process.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sec_helpers import (
    TINY_META,
    Recorder,
    Serve,
    deploy,
    error_of,
    free_port,
    recorder,
    serve,
    tiny_onnx,
)

import tiny_vit
from limner.errors import ForbiddenError, InvalidInputError, PayloadTooLargeError
from limner.models.keras import MAX_CONFIG_BYTES
from limner.models.policy import check_tenant_model
from limner.service.core.deployments import _disk_size, _Limits, _unpack

#: Settings of the server under attack.
MAX_UNPACKED = 25_000_000
#: Units of the wide layer of :func:`keras_zeros`: 192 × 15,000 float32 weights, 11.5 MB.
WIDE_UNITS = 15_000
WIDE_BYTES = 192 * WIDE_UNITS * 4


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture(scope="module")
def hub() -> Iterator[Recorder]:
    """A stand-in Hugging Face Hub on loopback that records every request it gets."""
    with recorder() as rec:
        yield rec


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, hub: Recorder) -> Iterator[Serve]:
    """``limner serve`` with a small unpacking limit, its Hub aimed at :func:`hub` and the
    environment's offline switches off (limner must switch the Hub off itself)."""
    data_dir = tmp_path_factory.mktemp("archives") / "data"
    env = {
        "LIMNER_MAX_UNPACKED_BYTES": str(MAX_UNPACKED),
        "LIMNER_MODEL_LOADS": "2",
        "LIMNER_MODEL_LOAD_TIMEOUT": "120",
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "USE_HUB_KERNELS": "YES",
    }
    with serve(data_dir, free_port(), env) as running:
        yield running


@pytest.fixture(scope="module")
def keras_zeros(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The members of a real ``.keras`` classifier of 8×8 images whose 11.5 MB of weights are
    all zeros (so they deflate to almost nothing), as Keras saved it."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(WIDE_UNITS),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Hugging Face ViT directory (safetensors weights)."""
    pytest.importorskip("transformers")
    return tiny_vit.make_vit(tmp_path_factory.mktemp("hf") / "tiny-vit", ["cat", "dog"])


def deflated(members: dict[str, bytes | Iterator[bytes]]) -> bytes:
    """A zip of ``members`` (bytes, or chunks streamed in) compressed with deflate."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, content in members.items():
            if isinstance(content, bytes):
                z.writestr(name, content)
                continue
            with z.open(name, "w", force_zip64=True) as member:
                for chunk in content:
                    member.write(chunk)
    return buf.getvalue()


def padded_config(total: int) -> Iterator[bytes]:
    """A ``config.json`` of ``total`` bytes: a Sequential model and a long string of padding."""
    head = b'{"module": "keras", "class_name": "Sequential", "config": {"layers": []}, "pad": "'
    yield head
    left = total - len(head) - 2
    while left > 0:
        yield b"a" * min(left, 1 << 22)
        left -= 1 << 22
    yield b'"}'


def keras_archive(config: dict) -> dict[str, bytes]:
    """The members of a ``.keras`` archive with the configuration ``config``."""
    return {
        "metadata.json": b'{"keras_version": "3.15.1"}',
        "config.json": json.dumps(config).encode(),
        "model.weights.h5": b"not read",
    }


def upload(http: httpx.Client, name: str, filename: str, data: bytes) -> httpx.Response:
    return deploy(http, data={"name": name}, files={"file": (filename, data)}, wait=120)


def no_server_path(server: Serve, message: str) -> None:
    """``message`` names no folder of the server's."""
    for folder in {str(server.data_dir), str(server.data_dir.resolve())}:
        assert folder not in message, message
    assert "/models/" not in message and "/tmp/" not in message, message


def zipped_dir(folder: Path, **replace: bytes) -> bytes:
    """The files of ``folder`` (``replace`` swaps or adds files by name) as a .zip."""
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    files.update(replace)
    return deflated({f"{folder.name}/{name}": data for name, data in files.items()})


# --------------------------------------------------------------------------- .keras archives


@pytest.mark.slow
def test_keras_config_that_inflates_to_200_mb_is_refused_unread(limited: Serve) -> None:
    """A 200 KB ``.keras`` whose ``config.json`` inflates to 200 MB is refused from the sizes
    it declares, quickly, and leaves nothing; so is one whose configuration stays under the
    upload's limits (16 MB) but over the configuration's own cap."""
    bomb = deflated({"config.json": padded_config(200_000_000), "model.weights.h5": b""})
    assert len(bomb) < 1_000_000
    capped = deflated({"config.json": padded_config(16_000_000), "model.weights.h5": b""})
    assert MAX_CONFIG_BYTES < 16_000_000 < MAX_UNPACKED
    before = limited.uploads()
    with limited.http(limited.tenant_key("keras-bombers")) as http:
        started = time.monotonic()
        error_of(upload(http, "bomb", "model.keras", bomb), 413)
        assert time.monotonic() - started < 10
        message = error_of(upload(http, "capped", "model.keras", capped), 413)["message"]
        assert "config.json" in message and str(MAX_CONFIG_BYTES) in message
    assert limited.uploads() == before


@pytest.mark.slow
def test_keras_members_over_the_unpacked_limit_are_refused(
    limited: Serve, keras_zeros: dict[str, bytes]
) -> None:
    """A loadable ``.keras`` plus 15 MB of deflated zeros among its assets declares 26.5 MB,
    over ``LIMNER_MAX_UNPACKED_BYTES`` (25 MB): refused before Keras could extract it."""
    padded = deflated({**keras_zeros, "assets/padding.bin": bytes(15_000_000)})
    assert len(padded) < 200_000
    before = limited.uploads()
    with limited.http(limited.tenant_key("keras-padders")) as http:
        message = error_of(upload(http, "padded", "model.keras", padded), 413)["message"]
        assert "LIMNER_MAX_UNPACKED_BYTES" in message
        # within the limits, a tenant's archive holds what Keras writes and nothing more
        extra = deflated({**keras_zeros, "assets/vocabulary.txt": b"a\nb\n"})
        message = error_of(upload(http, "extra", "model.keras", extra), 403)["message"]
        assert "assets/vocabulary.txt" in message
    assert limited.uploads() == before


def test_keras_upload_counts_its_unpacked_size(
    tmp_path: Path, keras_zeros: dict[str, bytes]
) -> None:
    """An 11.5 MB model uploaded as a small archive is 11.5 MB against the space's room: it is
    stored unpacked (what the deployment's folder measures, and what Keras reads, is what was
    counted), and refused where less room is left."""
    small = deflated(keras_zeros)
    assert len(small) < 200_000
    folder = tmp_path / "upload"
    folder.mkdir()
    path = _unpack(folder, "model.keras", small, None, _Limits(MAX_UNPACKED, MAX_UNPACKED))
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        assert {i.filename: archive.read(i) for i in archive.infolist()} == keras_zeros
    assert _disk_size(folder) >= WIDE_BYTES  # what the deployment records (size_bytes)
    full = tmp_path / "full"
    full.mkdir()
    with pytest.raises(PayloadTooLargeError, match="quota"):
        _unpack(full, "model.keras", small, None, _Limits(MAX_UNPACKED, WIDE_BYTES - 1))
    assert not any(full.iterdir())


def test_keras_archive_inside_a_zip_is_sized_too(tmp_path: Path) -> None:
    """A model directory (.zip) whose artifact is a ``.keras`` holding a configuration bomb:
    the inner archive is sized like the outer one, so it is refused before it is read."""
    inner = deflated({"config.json": padded_config(20_000_000), "model.weights.h5": b""})
    outer = deflated(
        {
            "limner-model.json": json.dumps({**TINY_META, "artifact": "model.keras"}).encode(),
            "model.keras": inner,
        }
    )
    assert len(outer) < 100_000
    for limit, refusal in ((40_000_000, r"config\.json"), (15_000_000, "LIMNER_MAX_UNPACKED")):
        folder = tmp_path / f"upload-{limit}"
        folder.mkdir()
        with pytest.raises(PayloadTooLargeError, match=refusal):
            _unpack(folder, "model.zip", outer, None, _Limits(limit, limit))


def test_keras_member_that_lies_about_its_size_is_refused(tmp_path: Path) -> None:
    """Declared 1 KB, the weights inflate to 20 MB: never more than the declared size is
    unpacked (the archive is refused as corrupt), and nothing is left in its place."""
    raw = bytearray(deflated({"config.json": b"{}", "model.weights.h5": bytes(20_000_000)}))
    name = b"model.weights.h5"
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := raw.find(signature, at)) >= 0:
            start = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[start : start + len(name)] == name:
                raw[at + offset : at + offset + 4] = (1024).to_bytes(4, "little")
            at += 4
    with pytest.raises((InvalidInputError, PayloadTooLargeError)):
        _unpack(tmp_path, "model.keras", bytes(raw), None, _Limits(10_000_000, 10_000_000))
    assert not (tmp_path / "model.keras").exists()


def test_zip_members_compressed_by_bzip2_are_refused_unread(tmp_path: Path) -> None:
    """bzip2 (and LZMA) members inflate without bound on a single read (905 bytes of bzip2
    inflate to 1 GiB in one ``read``): only deflate and stored members are unpacked."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("limner-model.json", json.dumps(TINY_META))
        z.writestr("model.onnx", tiny_onnx(tmp_path / "m.onnx").read_bytes())
    folder = tmp_path / "upload"
    folder.mkdir()
    with pytest.raises(InvalidInputError, match="deflate"):
        _unpack(folder, "model.zip", buf.getvalue(), None, _Limits(10**9, 10**9))
    assert not any(folder.iterdir())


# --------------------------------------------------------------------------- Keras' refused layers

LAMBDA_SPELLINGS = {
    "dotted class name": {"module": "keras", "class_name": "layers.Lambda"},
    "internal module": {"module": "keras.src.layers.core.lambda_layer", "class_name": "Lambda"},
    "as a function": {"module": "keras", "class_name": "function", "config": "layers.Lambda"},
    "other case": {"module": "keras.layers", "class_name": "LAMBDA"},
    "python lambda": {"module": "keras", "class_name": "__lambda__", "config": {"code": "x"}},
    "dotted TFSMLayer": {"module": "keras", "class_name": "layers.TFSMLayer"},
    "dotted utility": {"module": "keras", "class_name": "function", "config": "utils.get_file"},
}


@pytest.mark.parametrize("layer", LAMBDA_SPELLINGS.values(), ids=LAMBDA_SPELLINGS.keys())
def test_refused_keras_layers_are_refused_however_spelt(tmp_path: Path, layer: dict) -> None:
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [layer]}}
    path = tmp_path / "model.keras"
    path.write_bytes(deflated(keras_archive(config)))
    with pytest.raises(ForbiddenError, match=r"Lambda|TFSMLayer|utility"):
        check_tenant_model(path)


def test_dotted_lambda_is_the_lambda_layer_to_keras() -> None:
    """Why the spellings matter: Keras resolves ``keras`` + ``layers.Lambda`` to the layer."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    relu = {"module": "keras.activations", "class_name": "function", "config": "relu"}
    config = {**LAMBDA_SPELLINGS["dotted class name"], "config": {"function": relu}}
    layer = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert isinstance(layer, keras.layers.Lambda)


def test_keras_models_of_keras_own_layers_still_pass(
    tmp_path: Path, keras_zeros: dict[str, bytes]
) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(deflated(keras_zeros))
    assert check_tenant_model(path) == "keras"


# --------------------------------------------------------------------------- Hugging Face offline


HUB_REACHING = {
    "hub kernel": {"attn_implementation": "kernels-community/flash-attn2"},
    "flash attention": {"attn_implementation": "flash_attention_2"},
    "kernel per sub-config": {"attn_implementation": {"": "kernels-community/x"}},
    "quantization": {"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": 1}},
    "experts kernel": {"experts_implementation": "deepgemm"},
}


@pytest.mark.slow
def test_hf_configs_that_reach_the_hub_are_refused_and_the_hub_hears_nothing(
    limited: Serve, hub: Recorder, vit_dir: Path
) -> None:
    config = json.loads((vit_dir / "config.json").read_text())
    with limited.http(limited.tenant_key("hf-offline")) as http:
        for name, keys in HUB_REACHING.items():
            data = zipped_dir(vit_dir, **{"config.json": json.dumps({**config, **keys}).encode()})
            resp = upload(http, name.replace(" ", "-"), "vit.zip", data)
            assert 400 <= resp.status_code < 500, (name, resp.text)
            message = error_of(resp, resp.status_code)["message"]
            assert next(iter(keys)) in message, (name, message)
            no_server_path(limited, message)
        # an honest directory still loads, with the Hub off
        honest = upload(http, "honest", "vit.zip", zipped_dir(vit_dir))
        assert honest.status_code == 201, honest.text
    assert hub.seen == []


@pytest.mark.slow
def test_hf_index_naming_pickled_shards_is_refused(limited: Serve, vit_dir: Path) -> None:
    """A directory whose safetensors index names a pickled shard, with no model.safetensors:
    transformers would unpickle the shard; limner refuses it before loading."""
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    files = {p.name: p.read_bytes() for p in vit_dir.iterdir() if p.suffix != ".safetensors"}
    for shard in ("pytorch_model-00001-of-00001.bin", "../outside.safetensors"):
        index = {"metadata": {}, "weight_map": {"vit.embeddings.cls_token": shard}}
        members = {
            **files,
            "model.safetensors.index.json": json.dumps(index).encode(),
            "pytorch_model-00001-of-00001.bin": buf.getvalue(),
        }
        data = deflated({f"vit/{name}": content for name, content in members.items()})
        with limited.http(limited.tenant_key("hf-shards")) as http:
            message = error_of(upload(http, "sharded", "vit.zip", data), 403)["message"]
        assert "model.safetensors.index.json" in message and shard in message


def test_hf_index_check_in_process(vit_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_bytes((vit_dir / "config.json").read_bytes())
    for shard in ("model-00001.bin", "/etc/model.safetensors", "a/../../x.safetensors"):
        index = {"weight_map": {"w": shard}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        with pytest.raises(ForbiddenError, match="shard"):
            check_tenant_model(folder)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}})
    )
    assert check_tenant_model(folder) == "huggingface"


# --------------------------------------------------------------------------- no server paths


@pytest.mark.slow
def test_load_errors_name_the_upload_files_not_server_paths(
    limited: Serve, tmp_path: Path, keras_zeros: dict[str, bytes]
) -> None:
    import onnx

    no_weights = {k: v for k, v in keras_zeros.items() if k != "model.weights.h5"}
    broken_meta = deflated({"limner-model.json": b"{", "model.onnx": b"x"})
    graph = onnx.load(str(tiny_onnx(tmp_path / "model.onnx")))
    graph.graph.node[1].op_type = "NoSuchOperator"
    bad_onnx = graph.SerializeToString()
    with limited.http(limited.tenant_key("paths")) as http:
        keras_error = upload(http, "k", "model.keras", deflated(no_weights))
        meta_error = upload(http, "m", "model.zip", broken_meta)
        onnx_error = deploy(
            http,
            data={"name": "o", "metadata": json.dumps(TINY_META)},
            files={"file": ("model.onnx", bad_onnx)},
        )
    for resp, own_file in (
        (keras_error, "model.keras"),
        (meta_error, "limner-model.json"),
        (onnx_error, "model.onnx"),
    ):
        message = error_of(resp, 422)["message"]
        assert own_file in message
        no_server_path(limited, message)
