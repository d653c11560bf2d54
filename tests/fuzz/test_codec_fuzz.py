"""The serving codec (request bodies -> tensors) under generated bodies, for signatures
of every dtype the REST API carries, without TensorFlow: many more examples than the
served-model tier affords.

What must hold: decoding either gives arrays of the signature's dtype and shape, or a
RequestError 400 whose sentence names the input and what was expected; nothing else is
raised (no RecursionError, RuntimeError or numpy warning turned error).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellship.serve.codec import DTYPES, SignatureInfo, TensorSpecInfo, decode_predict, parse_json
from cellship.serve.errors import RequestError
from tests.fuzz.budget import examples
from tests.fuzz.payloads import Body, check_sentence, predict_body

DT = sorted(d for d in DTYPES if d != "DT_HALF") + ["DT_HALF"]


@st.composite
def signatures(draw: st.DrawFn) -> SignatureInfo:
    count = draw(st.integers(1, 3))
    names = draw(st.lists(st.sampled_from(["x", "image", "a", "b", "text", "ünï", "with space"]),
                          min_size=count, max_size=count, unique=True))
    specs = []
    for name in names:
        rank = draw(st.integers(1, 3))
        shape = (None,) + tuple(draw(st.sampled_from([None, 1, 2, 3])) for _ in range(rank - 1))
        specs.append(TensorSpecInfo(name, draw(st.sampled_from(DT)), shape))
    return SignatureInfo("serving_default", tuple(specs), (TensorSpecInfo("y", "DT_FLOAT", (None,)),))


@settings(max_examples=examples(400))
@given(data=st.data())
def test_decoding_gives_the_signatures_tensors_or_a_400_naming_the_input(data: st.DataObject) -> None:
    sig = data.draw(signatures())
    body: Body = data.draw(predict_body(sig))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow numpy would only warn about is a bug too
        try:
            request = decode_predict(parse_json(body.raw), sig)
        except RequestError as err:
            assert err.status == 400
            message = str(err)
            assert body.valid is False, (message, body)
            check_sentence(message, sig.input_names, body)
            return
    assert body.valid or body.kind in ("mangled", "names", "json"), body
    if body.valid:
        for spec in sig.inputs:
            arr = request.tensors[spec.name]
            assert arr.dtype == np.dtype(DTYPES[spec.dtype]), (spec, arr.dtype)
            assert len(arr.shape) == len(spec.shape)
            assert all(e is None or e == g for e, g in zip(spec.shape, arr.shape)), (spec, arr.shape)


@pytest.mark.parametrize("value", ["1e39", "-1e39", "3.5e38", "1e400", "-1e400", "16777217"])
def test_numbers_a_float_cannot_hold_are_refused_as_tf_serving_refuses_them(value: str) -> None:
    sig = SignatureInfo("serving_default", (TensorSpecInfo("x", "DT_FLOAT", (None,)),), ())
    with pytest.raises(RequestError) as info:
        decode_predict(parse_json(f'{{"instances": [{value}]}}'.encode()), sig)
    assert info.value.status == 400
    assert "loss of precision" in str(info.value) or "too big to be stored in a double" in str(info.value)


@pytest.mark.parametrize("value, dtype", [("NaN", "DT_FLOAT"), ("Infinity", "DT_DOUBLE"),
                                          ("-Infinity", "DT_FLOAT"), ("-0.0", "DT_FLOAT"),
                                          ("3.4028234663852886e38", "DT_FLOAT"), ("16777215", "DT_FLOAT")])
def test_edge_values_a_float_holds_pass_unchanged(value: str, dtype: str) -> None:
    sig = SignatureInfo("serving_default", (TensorSpecInfo("x", dtype, (None,)),), ())
    got = decode_predict(parse_json(f'{{"instances": [{value}]}}'.encode()), sig).tensors["x"][0]
    want = np.asarray(float(value.replace("Infinity", "inf")), dtype=DTYPES[dtype])
    assert got.tobytes() == want.tobytes()  # -0.0 keeps its sign, NaN stays NaN


@pytest.mark.parametrize("depth", [33, 1025, 100_000])
def test_deeply_nested_bodies_are_400s(depth: int) -> None:
    """The bug the first hostile run found: one body in eight was a 500 (RecursionError)."""
    for dtype in ("DT_STRING", "DT_FLOAT"):
        sig = SignatureInfo("serving_default", (TensorSpecInfo("x", dtype, None),), ())
        body = b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
        with pytest.raises(RequestError) as info:
            decode_predict(parse_json(body), sig)
        assert info.value.status == 400 and ("deep" in str(info.value)), str(info.value)


def test_whole_numbers_across_the_int64_and_uint64_ranges_are_a_uint64_tensor() -> None:
    """numpy widens [0, 2**64 - 1] to float64; it is still a valid DT_UINT64 tensor."""
    sig = SignatureInfo("serving_default", (TensorSpecInfo("x", "DT_UINT64", (None,)),), ())
    got = decode_predict(parse_json(b'{"instances": [0, 18446744073709551615]}'), sig).tensors["x"]
    assert got.dtype == np.uint64 and got.tolist() == [0, 18446744073709551615]
    signed = SignatureInfo("serving_default", (TensorSpecInfo("x", "DT_INT64", (None,)),), ())
    with pytest.raises(RequestError, match="18446744073709551615 does not fit in DT_INT64"):
        decode_predict(parse_json(b'{"instances": [-1, 18446744073709551615]}'), signed)


def test_a_b64_object_without_text_says_what_to_send() -> None:
    sig = SignatureInfo("serving_default", (TensorSpecInfo("text", "DT_STRING", (None,)),), ())
    with pytest.raises(RequestError) as info:
        decode_predict(parse_json(b'{"instances": [{"b64": 1}]}'), sig)
    assert "'text'" in str(info.value) and '{"b64": "aGk="}' in str(info.value)
