"""The Open Inference codecs: JSON, raw (binary extension, gRPC raw contents), gRPC typed
contents, binary bodies; each decode mirrors its encode, and broken input is a 400."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from limner.errors import BadRequestError
from limner.protocol import (
    CONTENTS_FIELDS,
    DATATYPES,
    RequestInput,
    decode_value,
    encode_bytes,
    encode_tensor,
    from_contents,
    from_raw,
    pack_binary,
    to_contents,
    to_raw,
    unpack_binary,
)


def sample(datatype: str) -> np.ndarray:
    """A [2, 3] array spanning the datatype's range."""
    dtype = DATATYPES[datatype]
    if dtype == np.bool_:
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [2, info.max - 1, info.max]], dtype=dtype)
    return np.array([[-1.5, 0.0, 1e-3], [2.25, 65504.0, -7.0]], dtype=dtype)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_numeric_round_trips(datatype: str) -> None:
    a = sample(datatype)
    raw = to_raw(datatype, a)
    assert len(raw) == a.size * DATATYPES[datatype].itemsize
    back = from_raw(datatype, [2, 3], raw)
    assert back.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(back, a)
    out = encode_tensor("t", a)
    assert out.datatype == datatype
    np.testing.assert_array_equal(decode_value(out), a)
    if datatype in CONTENTS_FIELDS:
        field, values = to_contents(datatype, a)
        assert field == CONTENTS_FIELDS[datatype]
        np.testing.assert_array_equal(from_contents(datatype, [2, 3], values, "t"), a)


def test_raw_is_little_endian_row_major() -> None:
    a = np.array([[1, 2], [3, 256]], dtype=np.uint16)
    assert to_raw("UINT16", a) == b"\x01\x00\x02\x00\x03\x00\x00\x01"
    assert to_raw("FP32", np.array([1.0], np.float32)) == struct.pack("<f", 1.0)


def test_bytes_round_trip_with_length_prefixes() -> None:
    items = [b"", b"\x00\xff", b"Egyptian cat"]
    raw = to_raw("BYTES", items)
    assert raw[:4] == b"\0\0\0\0" and raw[4:8] == struct.pack("<I", 2)
    assert from_raw("BYTES", [3], raw) == items
    field, values = to_contents("BYTES", items)
    assert field == "bytes_contents"
    assert from_contents("BYTES", [3], values, "t") == items
    assert decode_value(encode_bytes("b", items)) == items


def test_binary_body_round_trip() -> None:
    pixels = np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3)
    message = {
        "id": "r1",
        "inputs": [
            {"name": "image", "shape": [1, 2, 4, 3], "datatype": "UINT8", "data": []},
            {"name": "files", "shape": [2], "datatype": "BYTES", "data": []},
            {"name": "json", "shape": [2], "datatype": "INT64", "data": [5, 6]},
        ],
    }
    raws = {"image": to_raw("UINT8", pixels), "files": to_raw("BYTES", [b"ab", b"c"])}
    body, length = pack_binary(message, "inputs", raws)
    assert length is not None and json.loads(body[:length])["id"] == "r1"
    back, back_raws = unpack_binary(body, length, "inputs")
    assert back_raws == raws
    entries = {e["name"]: e for e in back["inputs"]}
    assert "data" not in entries["image"]
    assert entries["image"]["parameters"]["binary_data_size"] == len(raws["image"])
    image = RequestInput.model_validate(entries["image"])
    np.testing.assert_array_equal(decode_value(image, back_raws["image"]), pixels)
    assert decode_value(RequestInput.model_validate(entries["json"])).tolist() == [5, 6]
    plain, none = pack_binary(message, "inputs", {})
    assert none is None and unpack_binary(plain, None, "inputs") == (json.loads(plain), {})


@pytest.mark.parametrize(
    "call",
    [
        lambda: from_raw("UINT8", [2, 2], b"\0\0\0"),
        lambda: from_raw("FP32", [1], b"\0\0"),
        lambda: from_raw("UINT8", [-1, 2], b""),
        lambda: from_raw("BYTES", [1], b"\x05\0\0\0ab"),
        lambda: from_raw("BYTES", [1], b"\x01\0"),
        lambda: from_raw("BYTES", [2], to_raw("BYTES", [b"a"])),
        lambda: from_raw("COMPLEX", [1], b"\0"),
        lambda: from_raw("UINT8", [2**62, 2**62, 4], b""),  # wraps to 0 in int64
        lambda: from_contents("UINT8", [2**62, 2**62, 4], [], "t"),
        lambda: from_contents("UINT8", [2], [1, 300], "t"),
        lambda: from_contents("INT8", [1], [-129], "t"),
        lambda: from_contents("UINT8", [3], [1, 2], "t"),
        lambda: from_contents("FP16", [1], [1.0], "t"),
        lambda: unpack_binary(b'{"inputs": []}', 99, "inputs"),
        lambda: unpack_binary(b"{not json", None, "inputs"),
        lambda: unpack_binary(
            b'{"inputs": [{"name": "a", "parameters": {"binary_data_size": 9}}]}abc',
            66,
            "inputs",
        ),
        lambda: unpack_binary(b'{"inputs": []}trailing', 14, "inputs"),
    ],
)
def test_broken_data_are_bad_requests(call) -> None:
    with pytest.raises(BadRequestError):
        call()
