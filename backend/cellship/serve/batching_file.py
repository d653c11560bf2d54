"""TF Serving's batching parameters file (``--batching_parameters_file``), read as it does.

The file is a text-format ``tensorflow.serving.BatchingParameters`` protobuf::

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 1000 }
    max_enqueued_batches { value: 100 }
    num_batch_threads { value: 2 }
    allowed_batch_sizes: 8
    allowed_batch_sizes: 32

Why a message built here: the proto lives in TF Serving's servables
(``session_bundle_config.proto``), which ``tensorflow-serving-api`` does not ship. Text
format addresses fields by name, so declaring the message's fields (same names, types and
numbers as TF Serving's) lets protobuf's own text-format parser read the file exactly as
the model server does, wrappers (``{ value: N }``) and comments included. Fields TF Serving
has that cellship does not act on are declared too and reported as ignored, not rejected.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from cellship.errors import UsageError
from cellship.serve.batching import BatchingConfig

_INT64 = ".google.protobuf.Int64Value"
# (name, number, type name or scalar kind, repeated)
_FIELDS: tuple[tuple[str, int, str, bool], ...] = (
    ("max_batch_size", 1, _INT64, False),
    ("batch_timeout_micros", 2, _INT64, False),
    ("max_enqueued_batches", 3, _INT64, False),
    ("num_batch_threads", 4, _INT64, False),
    ("thread_pool_name", 5, ".google.protobuf.StringValue", False),
    ("allowed_batch_sizes", 6, "int64", True),
    ("pad_variable_length_inputs", 7, "bool", False),
    ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue", False),
    ("max_execution_batch_size", 9, _INT64, False),
)
USED = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
        "allowed_batch_sizes")


@lru_cache(maxsize=1)
def _message_class() -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="cellship/batching_parameters.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    field_type = descriptor_pb2.FieldDescriptorProto
    for name, number, kind, repeated in _FIELDS:
        entry = message.field.add(name=name, number=number)
        entry.label = field_type.LABEL_REPEATED if repeated else field_type.LABEL_OPTIONAL
        if kind.startswith("."):
            entry.type, entry.type_name = field_type.TYPE_MESSAGE, kind
        else:
            entry.type = field_type.TYPE_INT64 if kind == "int64" else field_type.TYPE_BOOL
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(
        "tensorflow.serving.BatchingParameters"))


def parse_batching_parameters(text: str, source: str = "the batching parameters") -> tuple[
        BatchingConfig, list[str]]:
    """The BatchingConfig a batching parameters file asks for, and the names of fields it
    sets that cellship ignores (for a warning)."""
    from google.protobuf import text_format

    message = _message_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise UsageError(f"{source} is not a TF Serving BatchingParameters text proto: "
                         f"{str(err).rstrip('.')}. "
                         "Write fields as `max_batch_size { value: 32 }` and "
                         "`allowed_batch_sizes: 8`.") from None
    values: dict[str, Any] = {}
    for name in USED[:-1]:
        if message.HasField(name):
            values[name] = int(getattr(message, name).value)
    values["allowed_batch_sizes"] = list(message.allowed_batch_sizes)
    ignored = [name for name, *_ in _FIELDS if name not in USED and _is_set(message, name)]
    try:
        return BatchingConfig.from_tf_serving(**values), ignored
    except UsageError as err:
        raise UsageError(f"{source}: {err}") from None


def _is_set(message: Any, name: str) -> bool:
    value = getattr(message, name)
    return message.HasField(name) if hasattr(value, "ListFields") else bool(value)


def read_batching_parameters(path: str | Path) -> tuple[BatchingConfig, list[str]]:
    """:func:`parse_batching_parameters` of a file (``--batching_parameters_file``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"Cannot read the batching parameters file {path}: {err.strerror}.") from None
    return parse_batching_parameters(text, str(path))
