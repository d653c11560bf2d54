"""Hypothesis strategies for TF Serving REST bodies, drawn from a signature: valid tensors
with the dtype's edge values (NaN, ±Infinity, -0.0, the extremes), the same tensors
mangled (a leaf of the wrong kind, a dimension too many or too few, a ragged row, a name
missing or unknown, lists nested far too deep), and JSON that is not a request at all.

Each body comes with what it is: ``valid`` (the server must answer 200) or not (400 whose
sentence names the input and what was expected), so a property can check the answer.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from cellship.serve.codec import SignatureInfo, TensorSpecInfo

FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-45, -1e-45,
               3.4028234663852886e38, -3.4028234663852886e38, 1.17549435e-38, 0.5, 2.5e-7]
INT_EDGES = {"DT_INT32": (-(2**31), 2**31 - 1), "DT_INT64": (-(2**63), 2**63 - 1),
             "DT_INT8": (-128, 127), "DT_UINT8": (0, 255), "DT_INT16": (-(2**15), 2**15 - 1),
             "DT_UINT16": (0, 2**16 - 1), "DT_UINT32": (0, 2**32 - 1),
             "DT_UINT64": (0, 2**64 - 1)}
FLOAT_LIMITS = {"DT_FLOAT": float(np.finfo(np.float32).max), "DT_DOUBLE": float(np.finfo(np.float64).max),
                "DT_HALF": float(np.finfo(np.float16).max)}


@dataclass(frozen=True)
class Body:
    raw: bytes
    valid: bool  # a well-formed request the signature takes: the answer is 200
    kind: str    # what was drawn (for the record and failure messages)


def leaf(dtype: str) -> st.SearchStrategy[Any]:
    """A value a tensor of ``dtype`` holds, edges first."""
    if dtype in FLOAT_LIMITS:
        limit = FLOAT_LIMITS[dtype]
        edges = [v for v in FLOAT_EDGES if not np.isfinite(v) or abs(v) <= limit]
        return st.one_of(st.sampled_from(edges),
                         st.floats(-limit, limit, allow_nan=False, width=32 if dtype != "DT_DOUBLE" else 64))
    if dtype in INT_EDGES:
        low, high = INT_EDGES[dtype]
        return st.one_of(st.sampled_from([low, high, 0, -1 if low < 0 else 1]), st.integers(low, high))
    if dtype == "DT_BOOL":
        return st.booleans()
    if dtype == "DT_STRING":
        return st.one_of(st.text(max_size=20),
                         st.binary(max_size=20).map(lambda b: {"b64": base64.b64encode(b).decode()}))
    raise ValueError(dtype)


def wrong_leaf(dtype: str) -> st.SearchStrategy[Any]:
    """A value a tensor of ``dtype`` cannot hold."""
    if dtype in FLOAT_LIMITS:
        limit = FLOAT_LIMITS[dtype]
        overflow = [limit * 10] if dtype != "DT_DOUBLE" else []
        # (true/false among numbers is left out: numpy reads it as 1/0; see tests/README.md)
        return st.sampled_from(["x", None, {"b64": "AA=="}, {}, *overflow])
    if dtype in INT_EDGES:
        low, high = INT_EDGES[dtype]
        return st.sampled_from([0.5, -0.0, float("nan"), float("inf"), "1", None, high + 1, low - 1, {}])
    if dtype == "DT_BOOL":
        return st.sampled_from([0, 1, "true", None, 0.0])
    return st.sampled_from([1, 1.5, True, None, {"b64": "not base64!"}, {"b64": 1}, {"x": "y"}])


def _dims(spec: TensorSpecInfo, batch: int) -> list[int]:
    shape = spec.shape if spec.shape is not None else (None,)
    return [batch if i == 0 else (d if d is not None else 2) for i, d in enumerate(shape)]


@st.composite
def tensor(draw: st.DrawFn, spec: TensorSpecInfo, batch: int) -> Any:
    """Nested lists of shape ``spec.shape`` (free dims: ``batch`` first, then 2)."""
    dims = _dims(spec, batch)
    count = int(np.prod(dims)) if dims else 1
    values = draw(st.lists(leaf(spec.dtype), min_size=count, max_size=count))
    arr = np.empty(count, dtype=object)
    arr[:] = values
    return arr.reshape(dims).tolist() if dims else values[0]


@st.composite
def mangled(draw: st.DrawFn, spec: TensorSpecInfo, batch: int) -> Any:
    """The tensor with one thing wrong."""
    good = draw(tensor(spec, batch))
    how = draw(st.sampled_from(["leaf", "deeper", "shallower", "ragged", "very deep"]))
    if how == "leaf":
        bad = draw(wrong_leaf(spec.dtype))
        value = good
        path = []
        while isinstance(value, list) and value:
            path.append(draw(st.integers(0, len(value) - 1)))
            value = value[path[-1]]
        if not path:
            return [bad] if isinstance(good, list) else bad
        holder = good
        for index in path[:-1]:
            holder = holder[index]
        holder[path[-1]] = bad
        return good
    if how == "deeper":
        return [[item] for item in good] if isinstance(good, list) else [[good]]
    if how == "shallower":
        flat = np.asarray(good, dtype=object).reshape(-1).tolist()
        return flat[0] if len(flat) and spec.shape and len(spec.shape) == 1 else flat
    if how == "ragged" and isinstance(good, list) and good and isinstance(good[0], list):
        good[0] = good[0] + good[0][:1]
        return good
    depth = draw(st.integers(33, 1200))
    return json.loads("[" * depth + "1" + "]" * depth)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def predict_body(draw: st.DrawFn, sig: SignatureInfo) -> Body:
    """A :predict body for ``sig``: valid, mangled, or not a request."""
    batch = draw(st.integers(1, 3))
    columnar = draw(st.booleans())
    names = sig.input_names
    choice = draw(st.sampled_from(["valid", "valid", "valid", "mangled", "mangled", "names",
                                   "json", "bytes"]))
    if choice == "json":
        doc = draw(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                                lambda kids: st.lists(kids, max_size=4)
                                | st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", *names, "x"]),
                                                  kids, max_size=4), max_leaves=20))
        return Body(_dumps(doc), False, "json")
    if choice == "bytes":
        return Body(draw(st.binary(max_size=64)), False, "bytes")
    tensors = {spec.name: draw(tensor(spec, batch)) for spec in sig.inputs}
    kind = choice
    if choice == "mangled":
        victim = draw(st.sampled_from(list(sig.inputs)))
        tensors[victim.name] = draw(mangled(victim, batch))
    elif choice == "names":
        if draw(st.booleans()) and len(names) > 0:
            tensors.pop(draw(st.sampled_from(names)))
        else:
            tensors["not_an_input"] = 1.0
    if columnar:
        value = tensors if len(names) > 1 or choice == "names" else tensors[names[0]]
        doc = {"inputs": value}
    elif len(names) == 1 and choice != "names":
        doc = {"instances": tensors[names[0]]}
    else:
        rows = []
        for i in range(batch):
            rows.append({n: (v[i] if isinstance(v, list) and len(v) > i else v) for n, v in tensors.items()})
        doc = {"instances": rows}
    if draw(st.booleans()):
        doc["signature_name"] = "serving_default"
    return Body(_dumps(doc), choice == "valid", kind)


EXPECTATION_WORDS = ("expected", "takes", "send", "must", "fit in", "cannot convert")


def check_sentence(message: str, names: list[str], body: Body) -> None:
    """A 400's sentence for ``body``: a tensor that was wrong is named, with what was
    expected. (Past 1024 levels of nesting the parser refuses the body before any input
    is read, and says so.)"""
    assert message and len(message) < 2000, message

    def named(candidates: list[str]) -> bool:
        return any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", message) for n in candidates)

    if body.kind == "mangled" and not message.startswith("Malformed JSON"):
        assert named([*names, "instances", "inputs"]), message
        assert any(w in message for w in EXPECTATION_WORDS), message
    if body.kind == "names":
        assert named([*names, "not_an_input"]), message
