"""TF Serving's JSON formats <-> numpy, checked without TensorFlow (cellship.serve.codec)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from cellship.serve.codec import (
    SignatureInfo,
    TensorSpecInfo,
    decode_examples,
    decode_predict,
    encode_classify,
    encode_predict,
    encode_regress,
    parse_json,
    signature_name,
)
from cellship.serve.errors import RequestError

IMAGE = SignatureInfo("serving_default", (TensorSpecInfo("image", "DT_FLOAT", (None, 8, 8, 1)),),
                      (TensorSpecInfo("dense_1", "DT_FLOAT", (None, 10)),))
TWO = SignatureInfo("serving_default", (TensorSpecInfo("a", "DT_FLOAT", (None, 2)),
                                        TensorSpecInfo("b", "DT_INT32", (None,))),
                    (TensorSpecInfo("sum", "DT_FLOAT", (None,)),))
TEXT = SignatureInfo("serving_default", (TensorSpecInfo("text", "DT_STRING", (None,)),),
                     (TensorSpecInfo("length", "DT_INT32", (None,)),))


def image(n: int, value: float = 0.5) -> list:
    return np.full((n, 8, 8, 1), value).tolist()


def error_of(fn, *args) -> RequestError:
    with pytest.raises(RequestError) as info:
        fn(*args)
    return info.value


# -- parsing ---------------------------------------------------------------------------------------
def test_parse_json_accepts_objects_and_tf_servings_nan_tokens() -> None:
    assert parse_json(b'{"instances": [1.0]}') == {"instances": [1.0]}
    doc = parse_json(b'{"instances": [NaN, Infinity, -Infinity]}')
    assert np.isnan(doc["instances"][0]) and doc["instances"][1:] == [float("inf"), float("-inf")]


@pytest.mark.parametrize("body, words", [
    (b'{"instances": [1.0,', "Malformed JSON"),
    (b"", "empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe{", "Malformed JSON"),
])
def test_parse_json_rejects_with_a_reason(body: bytes, words: str) -> None:
    err = error_of(parse_json, body)
    assert err.status == 400 and words in str(err)


def test_signature_name_defaults_and_must_be_a_string() -> None:
    assert signature_name({}) == "serving_default"
    assert signature_name({"signature_name": "other"}) == "other"
    assert "must be a string" in str(error_of(signature_name, {"signature_name": 3}))


# -- predict requests ------------------------------------------------------------------------------
def test_row_format_stacks_instances_into_a_batch() -> None:
    request = decode_predict({"instances": image(3)}, IMAGE)
    arr = request.tensors["image"]
    assert arr.shape == (3, 8, 8, 1) and arr.dtype == np.float32
    assert request.rows == 3 and not request.columnar


def test_row_format_with_named_inputs_and_columnar_format_agree() -> None:
    rows = decode_predict({"instances": [{"a": [1, 2], "b": 3}, {"a": [4, 5], "b": 6}]}, TWO)
    cols = decode_predict({"inputs": {"a": [[1, 2], [4, 5]], "b": [3, 6]}}, TWO)
    for name in ("a", "b"):
        np.testing.assert_array_equal(rows.tensors[name], cols.tensors[name])
    assert rows.tensors["b"].dtype == np.int32 and rows.rows == cols.rows == 2
    assert cols.columnar


def test_single_input_may_also_be_named() -> None:
    request = decode_predict({"instances": [{"image": image(1)[0]}]}, IMAGE)
    assert request.tensors["image"].shape == (1, 8, 8, 1)


@pytest.mark.parametrize("doc, sig, words", [
    ({"inputs": {"pixels": image(1)}}, IMAGE, ["'pixels'", "image (DT_FLOAT, shape [-1, 8, 8, 1])"]),
    ({"instances": [{"a": [1, 2]}]}, TWO, ["lacks the input 'b'"]),
    ({"instances": [[1, 2]]}, TWO, ["takes several inputs", "a, b"]),
    ({"instances": image(1), "inputs": image(1)}, IMAGE, ["both 'instances'"]),
    ({"signature_name": "serving_default"}, IMAGE, ["neither 'instances'", "image (DT_FLOAT"]),
    ({"instances": []}, IMAGE, ["empty"]),
    ({"instances": {"image": 1}}, IMAGE, ["must be a list"]),
])
def test_request_shape_errors_name_what_was_expected(doc: dict, sig: SignatureInfo,
                                                     words: list[str]) -> None:
    err = error_of(decode_predict, doc, sig)
    assert err.status == 400
    for word in words:
        assert word in str(err), str(err)


def test_wrong_shape_names_the_input_the_expected_and_the_got_shape() -> None:
    err = error_of(decode_predict, {"instances": [[1.0, 2.0, 3.0]]}, IMAGE)
    assert "'image'" in str(err) and "[8, 8, 1]" in str(err) and "got instances of shape [3]" in str(err)
    err = error_of(decode_predict, {"inputs": np.zeros((2, 8, 8)).tolist()}, IMAGE)
    assert "expected shape [-1, 8, 8, 1]" in str(err) and "got [2, 8, 8]" in str(err)


@pytest.mark.parametrize("value, words", [
    ([[["x"] * 1] * 8] * 8, "got strings"),
    ([[[None]] * 8] * 8, "got null values"),
    ([[[[1.0]] * 8] * 8, [[[1.0]] * 7] * 8], "ragged"),
    ([[[{"b64": "AA=="}]] * 8] * 8, "only for DT_STRING"),
])
def test_wrong_dtype_names_the_input_and_what_arrived(value: list, words: str) -> None:
    err = error_of(decode_predict, {"instances": value}, IMAGE)
    assert "'image'" in str(err) and words in str(err), str(err)


def test_integer_inputs_refuse_fractions_and_overflow() -> None:
    err = error_of(decode_predict, {"inputs": {"a": [[1, 2]], "b": [1.5]}}, TWO)
    assert "'b'" in str(err) and "DT_INT32" in str(err) and "decimal numbers" in str(err)
    err = error_of(decode_predict, {"inputs": {"a": [[1, 2]], "b": [2 ** 40]}}, TWO)
    assert "does not fit in DT_INT32" in str(err)


def test_strings_and_b64_binary_values() -> None:
    raw = bytes(range(256))
    request = decode_predict({"instances": ["héllo", {"b64": base64.b64encode(raw).decode()}]}, TEXT)
    assert list(request.tensors["text"]) == ["héllo".encode(), raw]
    err = error_of(decode_predict, {"instances": [{"b64": "not base64!"}]}, TEXT)
    assert "not valid base64" in str(err)
    err = error_of(decode_predict, {"instances": [3]}, TEXT)
    assert "'text'" in str(err) and "number" in str(err)


def test_batchable_only_with_a_free_leading_dimension() -> None:
    fixed = SignatureInfo("s", (TensorSpecInfo("x", "DT_FLOAT", (1, 3)),),
                          (TensorSpecInfo("y", "DT_FLOAT", (1,)),))
    assert IMAGE.batchable and not fixed.batchable
    assert decode_predict({"instances": [[1.0, 2.0, 3.0]]}, fixed).rows is None


# -- responses --------------------------------------------------------------------------------------
def test_row_response_single_output_is_a_plain_list_with_short_floats() -> None:
    body = encode_predict({"dense_1": np.array([[0.2, 1 / 3]], dtype=np.float32)}, columnar=False)
    assert body == b'{"predictions":[[0.2,0.33333334]]}'


def test_row_response_with_several_outputs_is_a_list_of_objects() -> None:
    out = {"a": np.array([1.5, 2.5], dtype=np.float32), "b": np.array([[1, 2], [3, 4]], dtype=np.int64)}
    assert json.loads(encode_predict(out, columnar=False)) == {
        "predictions": [{"a": 1.5, "b": [1, 2]}, {"a": 2.5, "b": [3, 4]}]}
    assert json.loads(encode_predict(out, columnar=True)) == {
        "outputs": {"a": [1.5, 2.5], "b": [[1, 2], [3, 4]]}}


def test_non_finite_outputs_use_tf_servings_tokens() -> None:
    body = encode_predict({"y": np.array([np.nan, np.inf, 1.0], dtype=np.float32)}, columnar=True)
    assert body.decode() == '{"outputs":[NaN,Infinity,1.0]}'


def test_string_outputs_and_bytes_suffix_b64() -> None:
    out = {"label": np.array([b"seven", b"one"], dtype=object),
           "raw_bytes": np.array([b"\x00\xff", b"ok"], dtype=object)}
    doc = json.loads(encode_predict(out, columnar=True))
    assert doc["outputs"]["label"] == ["seven", "one"]
    assert doc["outputs"]["raw_bytes"] == [{"b64": "AP8="}, {"b64": "b2s="}]


def test_classify_and_regress_results() -> None:
    classes = np.array([[b"a", b"b"]], dtype=object)
    scores = np.array([[0.25, 0.75]], dtype=np.float32)
    assert json.loads(encode_classify(classes, scores)) == {"results": [[["a", 0.25], ["b", 0.75]]]}
    assert json.loads(encode_classify(None, scores)) == {"results": [[["", 0.25], ["", 0.75]]]}
    assert encode_regress(np.array([[3.5], [4.0]], dtype=np.float32)) == b'{"results":[3.5,4.0]}'


def test_examples_become_typed_features_with_context() -> None:
    request = decode_examples({"signature_name": "tensorflow/serving/regress",
                               "context": {"country": "fr"},
                               "examples": [{"x": 1.0, "n": [1, 2], "img": {"b64": "AP8="}}]},
                              "regress")
    assert request.signature == "tensorflow/serving/regress"
    assert request.examples == [{"x": ("float", [1.0]), "n": ("int64", [1, 2]),
                                 "img": ("bytes", [b"\x00\xff"]), "country": ("bytes", [b"fr"])}]


@pytest.mark.parametrize("doc, words", [
    ({}, "needs 'examples'"),
    ({"examples": []}, "non-empty list"),
    ({"examples": [{"x": [1, 2.5]}]}, "mixes int64 and float"),
    ({"examples": [{"x": None}]}, "has a JSON null"),
    ({"context": {"x": 1}, "examples": [{"x": 2}]}, "both 'context' and example 0"),
])
def test_bad_examples_say_why(doc: dict, words: str) -> None:
    err = error_of(decode_examples, doc, "classify")
    assert words in str(err), str(err)


def test_classify_and_regress_capability_from_the_signature_shape() -> None:
    examples = (TensorSpecInfo("inputs", "DT_STRING", (None,)),)
    classify = SignatureInfo("c", examples, (TensorSpecInfo("classes", "DT_STRING", (None, 2)),
                                             TensorSpecInfo("scores", "DT_FLOAT", (None, 2))))
    regress = SignatureInfo("r", examples, (TensorSpecInfo("outputs", "DT_FLOAT", (None,)),))
    assert classify.can_classify and not classify.can_regress
    assert regress.can_regress and not regress.can_classify
    assert not IMAGE.can_classify and not IMAGE.can_regress
    assert SignatureInfo.from_dict(classify.to_dict()) == classify
