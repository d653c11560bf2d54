"""What a serving signature takes and returns, as the REST API sees it (no TensorFlow).

Shared by both halves of the codec: :mod:`.requests` checks bodies against a
:class:`SignatureInfo`, :mod:`.responses` writes outputs, and ``signatures`` (which does
load TensorFlow) fills these records from a SavedModel. TF DataType names are kept as TF
Serving spells them (``DT_FLOAT``) because the metadata endpoint reports them verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

# TF DataType names (as SignatureDefs and TF Serving's metadata spell them) -> numpy.
DTYPES: dict[str, Any] = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_HALF": np.float16,
    "DT_INT8": np.int8, "DT_INT16": np.int16, "DT_INT32": np.int32, "DT_INT64": np.int64,
    "DT_UINT8": np.uint8, "DT_UINT16": np.uint16, "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64, "DT_BOOL": np.bool_, "DT_STRING": object,
}


def format_shape(shape: Sequence[int | None] | None) -> str:
    """``(None, 8, 8, 1)`` -> ``[-1, 8, 8, 1]`` (TF Serving's spelling of a free dim)."""
    if shape is None:
        return "[?]"
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorSpecInfo:
    """One named input or output of a signature."""

    name: str
    dtype: str  # a TF DataType name: "DT_FLOAT"
    shape: tuple[int | None, ...] | None  # None: unknown rank; None in a dim: any size

    def describe(self) -> str:
        return f"{self.name} ({self.dtype}, shape {format_shape(self.shape)})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else [-1 if d is None else d for d in self.shape]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorSpecInfo":
        shape = data.get("shape")
        return cls(data["name"], data["dtype"],
                   None if shape is None else tuple(None if d == -1 else int(d) for d in shape))


@dataclass(frozen=True)
class SignatureInfo:
    """A serving signature: what a request must send and what comes back."""

    key: str
    inputs: tuple[TensorSpecInfo, ...]
    outputs: tuple[TensorSpecInfo, ...]
    method_name: str = PREDICT_METHOD
    _by_name: dict[str, TensorSpecInfo] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({spec.name: spec for spec in self.inputs})

    def input(self, name: str) -> TensorSpecInfo | None:
        return self._by_name.get(name)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    def takes(self) -> str:
        return ", ".join(spec.describe() for spec in self.inputs) or "no inputs"

    @property
    def batchable(self) -> bool:
        """Whether requests can be concatenated along dim 0 and the outputs split back:
        every input and output has a known rank and a free leading (batch) dimension."""
        specs = self.inputs + self.outputs
        return bool(self.inputs) and all(s.shape is not None and len(s.shape) >= 1
                                         and s.shape[0] is None for s in specs)

    def _one_string_input(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].dtype == "DT_STRING"

    @property
    def can_classify(self) -> bool:
        """TF Serving's classification shape: one DT_STRING input of serialized
        tf.Example, outputs ``classes`` and/or ``scores`` (or the classify method)."""
        names = {o.name for o in self.outputs}
        return self._one_string_input() and (self.method_name == CLASSIFY_METHOD
                                             or bool(names) and names <= {"classes", "scores"})

    @property
    def can_regress(self) -> bool:
        """TF Serving's regression shape: one DT_STRING input of serialized tf.Example,
        one output ``outputs`` (or the regress method)."""
        names = [o.name for o in self.outputs]
        return self._one_string_input() and (self.method_name == REGRESS_METHOD
                                             or names == ["outputs"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.key, "method_name": self.method_name,
                "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SignatureInfo":
        return cls(data["name"], tuple(TensorSpecInfo.from_dict(d) for d in data["inputs"]),
                   tuple(TensorSpecInfo.from_dict(d) for d in data["outputs"]),
                   data.get("method_name", PREDICT_METHOD))
