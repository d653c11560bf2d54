"""Typed tensors of the Open Inference Protocol, checked against a serving signature.

A v2 tensor is ``{"name", "datatype", "shape", "data"}`` in JSON, or its bytes in the
binary tensor extension (little-endian, row-major; BYTES as a 4-byte little-endian length
before each element) - the same layout gRPC's ``raw_input_contents`` uses, so REST and gRPC
share :func:`from_raw` and :func:`to_raw`. No TensorFlow here: the signature's dtypes are
TF DataType names (``DT_FLOAT``) and map one to one onto v2 datatypes (``FP32``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from cellship.serve.codec.signature import SignatureInfo, TensorSpecInfo, format_shape
from cellship.serve.errors import bad_request

V2_OF_TF = {
    "DT_BOOL": "BOOL", "DT_UINT8": "UINT8", "DT_UINT16": "UINT16", "DT_UINT32": "UINT32",
    "DT_UINT64": "UINT64", "DT_INT8": "INT8", "DT_INT16": "INT16", "DT_INT32": "INT32",
    "DT_INT64": "INT64", "DT_HALF": "FP16", "DT_FLOAT": "FP32", "DT_DOUBLE": "FP64",
    "DT_STRING": "BYTES",
}
NUMPY = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}


def datatype_of(spec: TensorSpecInfo) -> str:
    """The v2 datatype of a signature tensor (``DT_FLOAT`` -> ``FP32``)."""
    return V2_OF_TF.get(spec.dtype, spec.dtype)


def v2_shape(shape: tuple[int | None, ...] | None) -> list[int]:
    return [-1] if shape is None else [-1 if d is None else int(d) for d in shape]


def describe(spec: TensorSpecInfo) -> dict[str, Any]:
    """A tensor of the model metadata response."""
    return {"name": spec.name, "datatype": datatype_of(spec), "shape": v2_shape(spec.shape)}


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                       and d >= 0 for d in shape):
        raise bad_request(f"Input {name!r}: 'shape' must be a list of non-negative integers, "
                          f"got {shape!r}.")
    return tuple(shape)


def from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> np.ndarray:
    """A tensor from its binary form (binary extension or ``raw_input_contents``)."""
    count = _count(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise bad_request(f"Input {name!r}: its BYTES data ends inside a length prefix.")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise bad_request(f"Input {name!r}: an element claims {length} bytes, but only "
                                  f"{len(raw) - offset} are left.")
            items.append(raw[offset:offset + length])
            offset += length
        if len(items) != count:
            raise bad_request(f"Input {name!r}: shape {list(shape)} has {count} elements, the "
                              f"data holds {len(items)}.")
        return np.array(items, dtype=object).reshape(shape)
    dtype = NUMPY[datatype]
    if len(raw) != count * dtype.itemsize:
        raise bad_request(f"Input {name!r}: shape {list(shape)} of {datatype} is "
                          f"{count * dtype.itemsize} bytes, {len(raw)} were sent.")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def from_list(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    """A tensor from JSON ``data`` (flat, row-major, or nested as the shape)."""
    flat = np.asarray(data, dtype=object).reshape(-1) if isinstance(data, list) else None
    if flat is None:
        raise bad_request(f"Input {name!r}: 'data' must be a list, got {type(data).__name__}.")
    count = _count(shape)
    if flat.size != count:
        raise bad_request(f"Input {name!r}: shape {list(shape)} has {count} elements, 'data' "
                          f"holds {flat.size}.")
    if datatype == "BYTES":
        values = []
        for item in flat:
            if isinstance(item, str):
                values.append(item.encode())
            elif isinstance(item, (bytes, bytearray)):
                values.append(bytes(item))
            else:
                raise bad_request(f"Input {name!r} is BYTES: its data must be strings, got "
                                  f"{type(item).__name__}.")
        return np.array(values, dtype=object).reshape(shape)
    try:
        if datatype == "BOOL":
            if not all(isinstance(v, bool) for v in flat):
                raise TypeError("not true/false")
        elif any(isinstance(v, (bool, str, list, dict)) or v is None for v in flat):
            raise TypeError("not numbers")
        return np.array(flat.tolist(), dtype=NUMPY[datatype]).reshape(shape)
    except (TypeError, ValueError, OverflowError) as err:
        raise bad_request(f"Input {name!r}: its data does not fit datatype {datatype} "
                          f"({err}).") from None


@dataclass(frozen=True)
class CheckedInputs:
    tensors: dict[str, np.ndarray]
    rows: int | None  # batchable rows, or None: the request runs alone


def check_inputs(info: SignatureInfo, given: Mapping[str, tuple[str, np.ndarray]],
                 model: str) -> CheckedInputs:
    """Inputs ``{name: (datatype, array)}`` against the signature: every input present
    once, with its datatype and a shape its spec allows."""
    unknown = sorted(set(given) - set(info.input_names))
    if unknown:
        raise bad_request(f"Model {model} has no input {unknown[0]!r}; it takes {info.takes()}.")
    missing = [n for n in info.input_names if n not in given]
    if missing:
        raise bad_request(f"Input {missing[0]!r} is missing; model {model} takes {info.takes()}.")
    tensors: dict[str, np.ndarray] = {}
    for spec in info.inputs:
        datatype, value = given[spec.name]
        want = datatype_of(spec)
        if datatype != want:
            raise bad_request(f"Input {spec.name!r} is {datatype}, but model {model} takes "
                              f"{want} there ({spec.describe()}).")
        if spec.shape is not None:
            fits = len(spec.shape) == value.ndim and all(
                d is None or d == n for d, n in zip(spec.shape, value.shape))
            if not fits:
                raise bad_request(f"Input {spec.name!r} has shape {list(value.shape)}; model "
                                  f"{model} takes shape {format_shape(spec.shape)} there.")
        tensors[spec.name] = value
    rows = None
    if info.batchable:
        counts = {v.shape[0] for v in tensors.values()}
        if len(counts) > 1:
            raise bad_request(f"The inputs of model {model} disagree on the batch size (their "
                              f"first dimension): {sorted(counts)}.")
        rows = counts.pop()
    return CheckedInputs(tensors, rows)


def output_datatype(value: np.ndarray) -> str:
    if value.dtype == object or value.dtype.kind in "SU":
        return "BYTES"
    for name, dtype in NUMPY.items():
        if name != "BYTES" and value.dtype == dtype.newbyteorder("="):
            return name
    raise bad_request(f"An output of dtype {value.dtype} has no v2 datatype.")


def _as_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def to_raw(value: np.ndarray, datatype: str) -> bytes:
    """A tensor's binary form (for the binary extension and ``raw_output_contents``)."""
    if datatype == "BYTES":
        parts = []
        for item in value.reshape(-1):
            data = _as_bytes(item)
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(value, dtype=NUMPY[datatype]).tobytes()


def to_list(name: str, value: np.ndarray, datatype: str) -> list[Any]:
    """A tensor's JSON ``data``, flat and row-major as the protocol writes it."""
    if datatype == "BYTES":
        try:
            return [_as_bytes(item).decode() for item in value.reshape(-1)]
        except UnicodeDecodeError:
            raise bad_request(f"Output {name!r} holds bytes that are not UTF-8 text, which JSON "
                              "cannot carry; ask for it in binary: \"outputs\": [{\"name\": "
                              f"\"{name}\", \"parameters\": {{\"binary_data\": true}}}}].") from None
    return value.reshape(-1).tolist()
