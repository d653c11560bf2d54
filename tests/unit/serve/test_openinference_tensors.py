"""Open Inference Protocol tensors without TensorFlow: the binary layout (BYTES with length
prefixes) both ways, JSON data, and inputs checked against a signature."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from cellship.serve.codec.signature import SignatureInfo, TensorSpecInfo
from cellship.serve.errors import RequestError
from cellship.serve.openinference.tensors import (
    check_inputs,
    from_list,
    from_raw,
    output_datatype,
    to_list,
    to_raw,
)

SIG = SignatureInfo("serving_default",
                    (TensorSpecInfo("a", "DT_FLOAT", (None, 2)), TensorSpecInfo("b", "DT_INT32", (None,))),
                    (TensorSpecInfo("sum", "DT_FLOAT", (None,)),))


def test_bytes_round_trip_through_the_length_prefixed_layout() -> None:
    value = np.array([b"", b"\xff\x00", "é".encode()], dtype=object)
    raw = to_raw(value, "BYTES")
    assert raw == struct.pack("<I", 0) + struct.pack("<I", 2) + b"\xff\x00" + struct.pack("<I", 2) + "é".encode()
    assert from_raw("t", "BYTES", (3,), raw).tolist() == value.tolist()
    with pytest.raises(RequestError, match="ends inside a length prefix"):
        from_raw("t", "BYTES", (3,), raw + b"\x01")


def test_numbers_round_trip_little_endian_and_sizes_are_checked() -> None:
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = to_raw(value, "FP32")
    assert raw == value.astype("<f4").tobytes()
    assert from_raw("t", "FP32", (2, 3), raw).tolist() == value.tolist()
    with pytest.raises(RequestError, match=r"shape \[2, 2\] of FP32 is 16 bytes, 24 were sent"):
        from_raw("t", "FP32", (2, 2), raw)


def test_json_data_flat_or_nested_and_typed() -> None:
    assert from_list("t", "INT64", (2, 2), [1, 2, 3, 4]).tolist() == [[1, 2], [3, 4]]
    assert from_list("t", "INT64", (2, 2), [[1, 2], [3, 4]]).dtype == np.int64
    assert from_list("t", "BYTES", (1,), ["hi"]).tolist() == [b"hi"]
    assert from_list("t", "BOOL", (2,), [True, False]).tolist() == [True, False]
    for datatype, data in (("FP32", ["1"]), ("BOOL", [1]), ("BYTES", [1]), ("INT8", [1000])):
        with pytest.raises(RequestError):
            from_list("t", datatype, (1,), data)


def test_outputs_keep_their_datatype_and_non_utf8_needs_binary() -> None:
    assert output_datatype(np.zeros(1, np.float16)) == "FP16"
    assert output_datatype(np.array([b"x"], dtype=object)) == "BYTES"
    assert to_list("o", np.array([b"ok"], dtype=object), "BYTES") == ["ok"]
    with pytest.raises(RequestError, match="binary_data"):
        to_list("o", np.array([b"\xff"], dtype=object), "BYTES")


def test_inputs_are_checked_against_the_signature() -> None:
    a = np.ones((3, 2), np.float32)
    b = np.ones(3, np.int32)
    checked = check_inputs(SIG, {"a": ("FP32", a), "b": ("INT32", b)}, "multi")
    assert checked.rows == 3
    cases = [
        ({"a": ("FP32", a)}, "Input 'b' is missing"),
        ({"a": ("FP64", a.astype(np.float64)), "b": ("INT32", b)}, "'a' is FP64, but model multi takes FP32"),
        ({"a": ("FP32", np.ones((3, 3), np.float32)), "b": ("INT32", b)}, r"takes shape \[-1, 2\]"),
        ({"a": ("FP32", a), "b": ("INT32", np.ones(2, np.int32))}, "disagree on the batch size"),
        ({"a": ("FP32", a), "b": ("INT32", b), "c": ("FP32", a)}, "no input 'c'"),
    ]
    for given, words in cases:
        with pytest.raises(RequestError, match=words):
            check_inputs(SIG, given, "multi")
