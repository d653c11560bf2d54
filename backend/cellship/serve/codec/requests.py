"""Request bodies -> tensors: the half of the codec every client error comes from.

Each rule a client can break (the row and columnar formats, ``{"b64": ...}`` values,
dtypes and shapes against the signature, tf.Example features for :classify/:regress) is
checked here and answered with one sentence naming the input, what the signature expects
and what arrived. Formats follow TF Serving's ``json_tensor.cc``; NaN/Infinity tokens are
accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import orjson

from cellship.serve.codec.signature import (
    DEFAULT_SIGNATURE,
    DTYPES,
    SignatureInfo,
    TensorSpecInfo,
    format_shape,
)
from cellship.serve.errors import bad_request

MAX_DEPTH = 1024  # JSON nesting accepted (orjson's limit; no tensor nests a tenth as deep)
MAX_RANK = 32  # numpy's iterators stop here; TF Serving's models never come near it


def parse_json(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (NaN, Infinity and -Infinity allowed, as in
    TF Serving). Nesting deeper than :data:`MAX_DEPTH` and numbers too big for a double
    (``1e400``) are refused as TF Serving's parser refuses them, with a 400: both once
    reached the stdlib parser, whose RecursionError was a 500."""
    if not raw.strip():
        raise bad_request('The request body is empty: send a JSON object such as '
                          '{"instances": [...]}.')
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as fast_err:
        if "depth limit" in fast_err.msg:
            raise _too_deep() from None
        if "infinity" in fast_err.msg:
            raise bad_request(f"Malformed JSON: a number at line {fast_err.lineno} column "
                              f"{fast_err.colno} is too big to be stored in a double; "
                              "send Infinity for an infinite value.") from None
        try:  # the stdlib parser also reads the NaN / Infinity tokens TF Serving accepts
            doc = json.loads(raw, parse_float=_finite_float)
        except json.JSONDecodeError as err:
            raise bad_request(f"Malformed JSON: {err.msg} at line {err.lineno} column "
                              f"{err.colno} (character {err.pos}).") from None
        except UnicodeDecodeError:
            raise bad_request("Malformed JSON: the body is not UTF-8 text.") from None
        except RecursionError:
            raise _too_deep() from None
    if not isinstance(doc, dict):
        raise bad_request(f"The request body must be a JSON object such as "
                          f'{{"instances": [...]}}, not a JSON {_json_type(doc)}.')
    return doc


def _too_deep() -> Exception:
    return bad_request(f"Malformed JSON: the body nests lists or objects more than {MAX_DEPTH} "
                       "levels deep; a tensor's nested lists go as deep as its rank.")


def _finite_float(text: str) -> float:
    """A JSON number written out; one that overflows a double is refused (the NaN and
    Infinity tokens do not come here: they are parse_constant's)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise bad_request(f"Malformed JSON: the number {text[:40]} is too big to be stored in "
                          "a double; send Infinity for an infinite value.")
    return value


def signature_name(doc: Mapping[str, Any]) -> str:
    name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise bad_request(f"'signature_name' must be a string, got a JSON {_json_type(name)}.")
    return name or DEFAULT_SIGNATURE


@dataclass(frozen=True)
class PredictRequest:
    """A :predict body turned into tensors for one signature."""

    signature: str
    columnar: bool  # "inputs" -> "outputs"; otherwise "instances" -> "predictions"
    tensors: dict[str, np.ndarray]
    rows: int | None  # the batch dimension, when it may be batched with other requests


def decode_predict(doc: Mapping[str, Any], sig: SignatureInfo) -> PredictRequest:
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise bad_request("The request has both 'instances' (row format) and 'inputs' "
                          "(columnar format); send one of them.")
    if not (has_instances or has_inputs):
        keys = ", ".join(repr(k) for k in doc) or "none"
        raise bad_request(f"The request has neither 'instances' (row format) nor 'inputs' "
                          f"(columnar format); its keys: {keys}. Signature {sig.key!r} takes "
                          f"{sig.takes()}.")
    if not sig.inputs:
        raise bad_request(f"Signature {sig.key!r} takes no inputs; nothing can be fed to it.")
    if has_instances:
        tensors, rows = _decode_rows(doc["instances"], sig)
        return PredictRequest(sig.key, False, tensors, rows if sig.batchable else None)
    tensors = _decode_columns(doc["inputs"], sig)
    leading = {a.shape[0] if a.ndim else None for a in tensors.values()}
    batch_rows = next(iter(leading)) if sig.batchable and len(leading) == 1 else None
    return PredictRequest(sig.key, True, tensors, batch_rows)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _decode_rows(instances: Any, sig: SignatureInfo) -> tuple[dict[str, np.ndarray], int]:
    if not isinstance(instances, list):
        raise bad_request(f"'instances' must be a list with one item per instance, got a JSON "
                          f"{_json_type(instances)}.")
    if not instances:
        raise bad_request("'instances' is empty: send at least one instance.")
    names = sig.input_names
    if _is_named(instances[0]):
        for index, item in enumerate(instances):
            if not _is_named(item):
                raise bad_request(f"instance {index} is a JSON {_json_type(item)}, but instance "
                                  "0 is an object: send every instance as an object of named "
                                  "inputs, or none.")
            _check_names(item, sig, f"instance {index}")
        tensors = {name: _to_array([item[name] for item in instances], sig.input(name),
                                   row=True) for name in names}
    else:
        if len(names) > 1:
            raise bad_request(f"Signature {sig.key!r} takes several inputs ({', '.join(names)}): "
                              "send each instance as an object naming them, e.g. "
                              f'{{"{names[0]}": ..., "{names[1]}": ...}}.')
        for index, item in enumerate(instances):
            if _is_named(item):
                raise bad_request(f"instance {index} is an object, but instance 0 is not: "
                                  "send every instance the same way.")
        tensors = {names[0]: _to_array(instances, sig.inputs[0], row=True)}
    return tensors, len(instances)


def _decode_columns(inputs: Any, sig: SignatureInfo) -> dict[str, np.ndarray]:
    names = sig.input_names
    if _is_named(inputs):
        _check_names(inputs, sig, "'inputs'")
        return {name: _to_array(inputs[name], sig.input(name), row=False) for name in names}
    if len(names) > 1:
        raise bad_request(f"Signature {sig.key!r} takes several inputs ({', '.join(names)}): "
                          "'inputs' must be an object naming each of them.")
    return {names[0]: _to_array(inputs, sig.inputs[0], row=False)}


def _check_names(item: Mapping[str, Any], sig: SignatureInfo, where: str) -> None:
    unknown = [k for k in item if sig.input(k) is None]
    if unknown == ["b64"] and len(item) == 1:  # a {"b64": ...} whose value is not text
        strings = [s.name for s in sig.inputs if s.dtype == "DT_STRING"] or sig.input_names
        raise bad_request(f"{where} is {{\"b64\": ...}} with a JSON {_json_type(item['b64'])}, "
                          f"not a string: for binary data of input {strings[0]!r} send "
                          '{"b64": "<base64 text>"}, e.g. {"b64": "aGk="}.')
    if unknown:
        raise bad_request(f"{where} names the input {unknown[0]!r}, which signature {sig.key!r} "
                          f"does not take; it takes {sig.takes()}.")
    missing = [n for n in sig.input_names if n not in item]
    if missing:
        raise bad_request(f"{where} lacks the input {missing[0]!r}: signature {sig.key!r} "
                          f"takes {sig.takes()}.")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_KIND_WORDS = {"f": "decimal numbers", "i": "whole numbers", "u": "whole numbers",
               "b": "true/false values", "U": "strings", "S": "strings"}


def _got(arr: np.ndarray) -> str:
    if arr.dtype.kind == "O":
        for leaf in arr.flat:
            if leaf is None:
                return "null values"
            if isinstance(leaf, dict):
                return "objects" + (" ({\"b64\": ...} is only for DT_STRING inputs)"
                                    if _is_b64(leaf) else "")
            if isinstance(leaf, list):
                return "ragged nested lists (rows of different lengths)"
        return "mixed values"
    return _KIND_WORDS.get(arr.dtype.kind, str(arr.dtype))


_ACCEPTS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}


def _to_array(value: Any, spec: TensorSpecInfo | None, row: bool) -> np.ndarray:
    """One input's JSON value as a numpy array of the signature's dtype and shape."""
    assert spec is not None
    target = DTYPES.get(spec.dtype)
    if target is None:
        raise bad_request(f"input {spec.name!r} has dtype {spec.dtype}, which the REST API "
                          "cannot carry in JSON.")
    _check_depth(value, spec, row)
    if target is object:
        arr = _to_strings(value, spec)
    else:
        try:
            inferred = np.asarray(value)
        except (ValueError, TypeError):
            raise bad_request(f"input {spec.name!r}: expected {spec.dtype} values in nested "
                              f"lists of shape {_expected_shape(spec, row)}, got ragged nested "
                              "lists (rows of different lengths).") from None
        kind = np.dtype(target).kind
        if kind in "iu" and inferred.dtype.kind == "f" and inferred.size:
            exact = _whole_numbers(value)
            if exact is not None:
                _check_fits(min(exact), max(exact), target, spec)
                inferred = np.asarray(value, dtype=target)
        if inferred.dtype.kind not in _ACCEPTS[kind] or inferred.dtype.kind == "O":
            if inferred.size == 0 and inferred.dtype.kind == "f":
                inferred = inferred.astype(target)
            else:
                raise bad_request(f"input {spec.name!r}: expected {spec.dtype} values, got "
                                  f"{_got(inferred)}{_example_of(inferred, kind)}.")
        if kind in "iu" and inferred.size:
            _check_fits(inferred.min(), inferred.max(), target, spec)
        if kind == "f" and inferred.size:
            _check_lossless(inferred, np.dtype(target), spec)
        arr = inferred.astype(target, copy=False)
    _check_shape(arr, spec, row)
    return arr


def _whole_numbers(value: Any) -> list[int] | None:
    """The values as Python ints when every one is a whole number: numpy widens a list
    mixing the int64 and uint64 ranges (``[0, 18446744073709551615]``, a valid DT_UINT64
    tensor) to float64; None when some value really is a decimal number."""
    leaves = np.asarray(value, dtype=object).reshape(-1).tolist()
    return leaves if all(type(leaf) is int for leaf in leaves) else None


def _check_fits(low: Any, high: Any, target: Any, spec: TensorSpecInfo) -> None:
    info = np.iinfo(target)
    if low < info.min or high > info.max:
        raise bad_request(f"input {spec.name!r}: {high if high > info.max else low} "
                          f"does not fit in {spec.dtype} ({info.min}..{info.max}).")


def _example_of(arr: np.ndarray, kind: str) -> str:
    """`` such as 1.5``: the first value of the wrong kind, as TF Serving names it."""
    if arr.dtype.kind == "O" or not arr.size:
        return ""
    if arr.dtype.kind == "f" and kind in "iu":
        flat = arr.reshape(-1)
        return f" such as {flat[0].item()!r}"
    return ""


def _depth(value: Any) -> int:
    """How deep ``value``'s lists nest, along the first items (what numpy would try)."""
    depth = 0
    while isinstance(value, list) and value and depth <= MAX_DEPTH:
        depth += 1
        value = value[0]
    return depth + (1 if isinstance(value, list) else 0)


def _check_depth(value: Any, spec: TensorSpecInfo, row: bool) -> None:
    """Lists nested deeper than the signature's rank (or than :data:`MAX_RANK`) are a
    shape error, named before numpy tries them (past its limits numpy raised a
    RuntimeError, a 500 for DT_STRING inputs, or called them ragged)."""
    depth = _depth(value)
    rank = None if spec.shape is None else len(spec.shape)
    limit = MAX_RANK if rank is None else rank
    if depth <= limit:
        return
    expected = (f"nested lists of shape {_expected_shape(spec, row)}" if rank is not None
                else f"at most {MAX_RANK} levels of nested lists")
    what = "instances" if row else "values"
    raise bad_request(f"input {spec.name!r}: expected {spec.dtype} {what} in {expected} "
                      f"(signature shape {format_shape(spec.shape)}), got lists nested "
                      f"{depth - (1 if row else 0)} levels deep.")


def _check_lossless(arr: np.ndarray, target: np.dtype, spec: TensorSpecInfo) -> None:
    """TF Serving's rule for decimal inputs: a finite number the dtype cannot hold (1e39
    for DT_FLOAT) or a whole number past its exact integers (2**24 for DT_FLOAT) is
    refused, not rounded to infinity or to a neighbour. NaN and Infinity pass."""
    if arr.dtype.kind in "iu":
        exact = (1 << np.finfo(target).nmant + 1) - 1
        low, high = int(arr.min()), int(arr.max())
        worst = high if abs(high) >= abs(low) else low
        if abs(worst) > exact:
            raise bad_request(f"input {spec.name!r}: cannot convert {worst} to {spec.dtype} "
                              f"without loss of precision (whole numbers up to {exact} are "
                              "exact); send it as a decimal number or use a DT_DOUBLE input.")
        return
    if target.itemsize >= arr.dtype.itemsize:
        return
    finite = arr[np.isfinite(arr)]
    if finite.size:
        biggest = float(np.abs(finite).max())
        if biggest > float(np.finfo(target).max):
            raise bad_request(f"input {spec.name!r}: cannot convert {biggest:g} to {spec.dtype} "
                              "without loss of precision (the largest finite value is "
                              f"{float(np.finfo(target).max):g}).")


def _to_strings(value: Any, spec: TensorSpecInfo) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=object)
    except (ValueError, TypeError):
        arr = np.asarray([None], dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for index, leaf in enumerate(arr.flat):
        if isinstance(leaf, str):
            out.flat[index] = leaf.encode("utf-8")
        elif _is_b64(leaf):
            try:
                out.flat[index] = base64.b64decode(leaf["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"input {spec.name!r}: {{\"b64\": {leaf['b64'][:40]!r}}} is "
                                  "not valid base64; send the bytes base64-encoded "
                                  '(standard alphabet, padded), e.g. {"b64": "aGk="}.') from None
        elif isinstance(leaf, list):
            raise bad_request(f"input {spec.name!r}: expected {spec.dtype} values in nested "
                              "lists of one shape, got ragged nested lists.")
        else:
            raise bad_request(f"input {spec.name!r}: expected {spec.dtype} values (strings, or "
                              f'{{"b64": ...}} for binary data), got a JSON {_json_type(leaf)}.')
    return out


def _expected_shape(spec: TensorSpecInfo, row: bool) -> str:
    if spec.shape is None:
        return "[?]"
    return format_shape(spec.shape[1:] if row else spec.shape)


def _check_shape(arr: np.ndarray, spec: TensorSpecInfo, row: bool) -> None:
    expected = spec.shape
    if expected is None:
        return
    got = arr.shape
    if len(got) == len(expected) and all(e is None or e == g for e, g in zip(expected, got)):
        return
    if row:
        raise bad_request(f"input {spec.name!r}: expected each instance of shape "
                          f"{format_shape(expected[1:])} (signature shape "
                          f"{format_shape(expected)}, {spec.dtype}), got instances of shape "
                          f"{format_shape(got[1:])}.")
    raise bad_request(f"input {spec.name!r}: expected shape {format_shape(expected)} "
                      f"({spec.dtype}), got {format_shape(got)}.")


# -- classify / regress ---------------------------------------------------------------------
Feature = tuple[str, list[Any]]  # ("int64" | "float" | "bytes", values)


@dataclass(frozen=True)
class ExamplesRequest:
    """A :classify or :regress body: tf.Example features, context merged into each."""

    signature: str
    examples: list[dict[str, Feature]]


def decode_examples(doc: Mapping[str, Any], verb: str) -> ExamplesRequest:
    examples = doc.get("examples")
    if examples is None:
        raise bad_request(f"A {verb} request needs 'examples': a list of objects of features, "
                          'e.g. {"examples": [{"x": 1.0}]}.')
    if not isinstance(examples, list) or not examples:
        raise bad_request(f"'examples' must be a non-empty list of objects, got "
                          f"{'an empty list' if examples == [] else 'a JSON ' + _json_type(examples)}.")
    context: dict[str, Feature] = {}
    if "context" in doc:
        if not _is_named(doc["context"]):
            raise bad_request("'context' must be an object of features shared by all examples.")
        context = _features(doc["context"], "context")
    decoded = []
    for index, example in enumerate(examples):
        if not _is_named(example):
            raise bad_request(f"example {index} must be a JSON object of features, got a JSON "
                              f"{_json_type(example)}.")
        features = _features(example, f"example {index}")
        both = sorted(set(features) & set(context))
        if both:
            raise bad_request(f"feature {both[0]!r} is in both 'context' and example {index}; "
                              "a context feature must not appear in the examples.")
        decoded.append(features | context)
    return ExamplesRequest(signature_name(doc), decoded)


def _features(obj: Mapping[str, Any], where: str) -> dict[str, Feature]:
    out: dict[str, Feature] = {}
    for name, content in obj.items():
        kind: str | None = None
        values: list[Any] = []
        for value in content if isinstance(content, list) else [content]:
            if isinstance(value, bool):
                this, value = "int64", int(value)
            elif isinstance(value, int):
                this = "int64"
            elif isinstance(value, float):
                this = "float"
            elif isinstance(value, str):
                this, value = "bytes", value.encode("utf-8")
            elif _is_b64(value):
                this = "bytes"
                try:
                    value = base64.b64decode(value["b64"], validate=True)
                except (binascii.Error, ValueError):
                    raise bad_request(f"{where}: feature {name!r} has a b64 value that is not "
                                      "valid base64.") from None
            else:
                raise bad_request(f"{where}: feature {name!r} has a JSON {_json_type(value)}; "
                                  "a feature is a number, a string, {\"b64\": ...}, or a flat "
                                  "list of one of those.")
            if kind is not None and kind != this:
                raise bad_request(f"{where}: feature {name!r} mixes {kind} and {this} values; "
                                  "a feature holds one kind.")
            kind = this
            values.append(value)
        out[name] = (kind or "float", values)
    return out
