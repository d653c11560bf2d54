"""Output tensors -> response bodies, written the way TF Serving writes them.

``predictions`` (row format) or ``outputs`` (columnar), ``results`` for :classify and
:regress; float32 written shortest (0.2, not 0.20000000298...), NaN/Infinity as tokens
(the stdlib encoder, since orjson would write null), DT_STRING outputs whose name ends in
``_bytes`` as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping

import numpy as np
import orjson

from cellship.serve.errors import RequestError, bad_request

_ORJSON_KINDS = frozenset("fiub")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class _NonFinite:
    """An output holding NaN or Infinity: written by the stdlib encoder, which spells them
    as TF Serving does (orjson would write null)."""

    def __init__(self, value: np.ndarray | np.generic) -> None:
        self.value = value


def output_value(name: str, arr: np.ndarray) -> Any:
    """One output tensor in a form :func:`dumps` writes the TF Serving way."""
    if arr.dtype.kind in "OS":
        return _strings_out(name, arr)
    if arr.dtype.kind not in _ORJSON_KINDS or arr.dtype.itemsize > 8:
        arr = arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float32)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return _NonFinite(arr)
    return arr[()] if arr.ndim == 0 else np.ascontiguousarray(arr)


def _strings_out(name: str, arr: np.ndarray) -> Any:
    as_b64 = name.endswith("_bytes")

    def one(value: Any) -> Any:
        if isinstance(value, str):
            return value
        data = bytes(value)
        if not as_b64:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(data).decode("ascii")}

    if arr.ndim == 0:
        return one(arr[()])
    out = np.empty(arr.shape, dtype=object)
    for index, value in enumerate(arr.flat):
        out.flat[index] = one(value)
    return out.tolist()


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, _NonFinite):
        return True
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, _NonFinite):
        return _plain(value.value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def dumps(payload: Any) -> bytes:
    """JSON bytes: float32 values written shortest (0.2, not 0.20000000298...) as TF
    Serving writes them, NaN/Infinity as tokens."""
    if _has_nonfinite(payload):
        return json.dumps(_plain(payload), allow_nan=True, separators=(",", ":")).encode()
    return orjson.dumps(payload, option=_NUMPY)


def encode_predict(outputs: Mapping[str, np.ndarray], columnar: bool) -> bytes:
    """``{"predictions": ...}`` (row format) or ``{"outputs": ...}`` (columnar)."""
    if not outputs:
        raise RequestError("The signature returned no outputs.", 500)
    values = {name: output_value(name, arr) for name, arr in outputs.items()}
    if columnar:
        return dumps({"outputs": next(iter(values.values())) if len(values) == 1 else values})
    sizes = {name: (arr.shape[0] if arr.ndim else None) for name, arr in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise bad_request("The outputs of this signature do not share a batch dimension "
                          f"({', '.join(f'{k}: {v}' for k, v in sizes.items())}), so they cannot "
                          "be returned per instance; send the columnar format ('inputs').")
    if len(values) == 1:
        return dumps({"predictions": next(iter(values.values()))})
    rows = next(iter(sizes.values())) or 0
    per_row = {name: _rows_of(value, rows) for name, value in values.items()}
    return dumps({"predictions": [{name: per_row[name][i] for name in values}
                                  for i in range(rows)]})


def _rows_of(value: Any, rows: int) -> list[Any]:
    if isinstance(value, _NonFinite):
        column = np.asarray(value.value)
        return [_NonFinite(column[i]) for i in range(rows)]
    if isinstance(value, np.ndarray):
        return [value[i] for i in range(rows)]
    return list(value)


def encode_classify(classes: np.ndarray | None, scores: np.ndarray | None) -> bytes:
    """``{"results": [[[label, score], ...], ...]}`` as TF Serving writes a classification
    (label "" when the signature has no ``classes``, score 0.0 when it has no ``scores``)."""
    ref = scores if scores is not None else classes
    if ref is None:
        raise RequestError("The classification signature returned neither 'classes' nor "
                           "'scores'.", 500)
    n = ref.shape[0] if ref.ndim else 1
    score_rows = None if scores is None else scores.reshape(n, -1).astype(np.float32)
    class_rows = None if classes is None else classes.reshape(n, -1)
    k = (score_rows if score_rows is not None else class_rows).shape[1]  # type: ignore[union-attr]
    results = [[["" if class_rows is None else _label(class_rows[i, j]),
                 np.float32(0.0) if score_rows is None else score_rows[i, j]]
                for j in range(k)] for i in range(n)]
    if score_rows is not None and not np.isfinite(score_rows).all():
        return dumps({"results": [[[lab, _NonFinite(score_rows[i, j])] for j, (lab, _) in enumerate(row)]
                                  for i, row in enumerate(results)]})
    return dumps({"results": results})


def _label(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def encode_regress(values: np.ndarray) -> bytes:
    """``{"results": [v1, v2, ...]}``: one value per example."""
    flat = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)
    if flat.shape[1] != 1:
        raise bad_request(f"The regression signature returned {flat.shape[1]} values per example; "
                          "a regression returns one.")
    return dumps({"results": output_value("outputs", flat[:, 0].astype(np.float32))})


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
