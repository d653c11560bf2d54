"""Reading TensorBoard event files as they grow, without TensorFlow.

Hand-written rather than tensorboard's ``EventAccumulator`` / ``event_file_loader`` because:

- the kernel (and the local supervisor) must stay light: tensorboard's readers go through
  ``tensorboard.compat.tf``, which imports TensorFlow (~5 s, ~700 MB) when it is installed.
  Only the generated protobuf modules are used here, imported lazily;
- a reader must resume at a byte offset, so each poll costs only the newly written bytes;
- a record cut short at the end of a file is a write in progress, not an error: it is left
  unconsumed and read again on the next poll. A record whose checksum does not match is
  real damage: the file is reported once and then left alone, never raised into a notebook.

An event file is a sequence of TFRecords: ``uint64 length`` (little endian), ``uint32``
masked CRC-32C of the length bytes, ``length`` bytes of a serialized ``Event`` proto, and a
``uint32`` masked CRC-32C of those bytes.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellship.errors import MissingDependency
from cellship.inside.relay import ScalarPoint

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tensorboard.compat.proto.event_pb2 import Event

EVENT_FILE_MARKER = "events.out.tfevents."
# Keras's TensorBoard callback on non-chief MultiWorkerMirrored workers writes into
# ``<logdir>/workertemp_<task>/`` and deletes it afterwards: duplicates of the chief's curves.
_WORKER_TEMP_PREFIX = "workertemp_"

_HEADER = 12   # uint64 length + uint32 crc of the length
_FOOTER = 4    # uint32 crc of the data
_READ_BYTES = 16 << 20     # one read's chunk of a file
_MAX_RECORD = 1 << 30      # a larger length is damage, not a record to wait for
_ALWAYS_CHECK = 64 << 10   # records up to this size always have their data checksum checked


# -- CRC-32C (Castagnoli), the checksum of TFRecord framing ------------------------------
def _make_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # reversed Castagnoli polynomial
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data`` (continuing from ``crc``). Pure Python: no package provides
    it in the base install; scalar event records are a few dozen bytes each."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores (masking keeps CRCs of CRCs well distributed)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord (what TensorFlow's writer appends)."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc32c(header)) + data
            + struct.pack("<I", masked_crc32c(data)))


def _event_pb2() -> Any:
    try:
        import tensorboard.compat.proto.event_pb2 as event_pb2
    except ImportError as err:
        raise MissingDependency("Reading TensorBoard event files needs the tensorboard "
                                "package: pip install tensorboard") from err
    return event_pb2


class EventFileTail:
    """Incremental reader of one event file: each :meth:`read` returns the records
    completed since the previous one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.offset = 0        # start of the first record not yet consumed
        self.broken = False    # damage was found: the file is no longer read

    def _give_up(self, what: str, pos: int) -> None:
        self.broken = True
        warnings.warn(f"cellship: TensorBoard event file {self.path} is damaged ({what} at "
                      f"byte {self.offset + pos}); no further metrics are read from it",
                      RuntimeWarning, stacklevel=3)

    def read(self, max_bytes: int | None = None) -> list[Event]:
        """The complete records appended since the last read, from at most about
        ``max_bytes`` (16 MiB) of the file, more when a single record is larger: call again
        while it returns events to catch up with a long file a chunk at a time."""
        if self.broken:
            return []
        max_bytes = max_bytes or _READ_BYTES
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(max_bytes)
                if len(data) == max_bytes and _length_ok(data):
                    need = _HEADER + struct.unpack_from("<Q", data)[0] + _FOOTER
                    if len(data) < need <= _MAX_RECORD:  # a first record larger than a chunk
                        data += handle.read(need - len(data))
        except OSError:  # vanished (deleted temp dir) or not readable yet
            return []
        if not data:
            return []
        event_pb2 = _event_pb2()
        from google.protobuf.message import DecodeError  # protobuf comes with tensorboard

        events = []
        pos = 0  # within data; the file position is self.offset + pos
        end = len(data)
        while end - pos >= _HEADER:
            if not _length_ok(data, pos):
                self._give_up("bad length checksum", pos)
                break
            (length,) = struct.unpack_from("<Q", data, pos)
            if length > _MAX_RECORD:
                self._give_up(f"implausible record length {length}", pos)
                break
            stop = pos + _HEADER + length
            if stop + _FOOTER > end:
                break  # the writer is still appending this record: retry next time
            payload = data[pos + _HEADER:stop]
            (data_crc,) = struct.unpack_from("<I", data, stop)
            # Pure-Python CRC runs at ~10 MB/s holding the GIL (the kernel's!): big records
            # (graphs, images, histograms) are checked only when they carry a scalar.
            checked = length <= _ALWAYS_CHECK
            if checked and masked_crc32c(payload) != data_crc:
                self._give_up("bad record checksum", pos)
                break
            event = event_pb2.Event()
            try:
                event.ParseFromString(payload)
            except DecodeError as err:
                self._give_up(f"undecodable record: {err}", pos)
                break
            if not checked and _has_scalar(event) and masked_crc32c(payload) != data_crc:
                self._give_up("bad record checksum", pos)
                break
            events.append(event)
            pos = stop + _FOOTER
        self.offset += pos
        return events


def _length_ok(data: bytes, pos: int = 0) -> bool:
    return masked_crc32c(data[pos:pos + 8]) == struct.unpack_from("<I", data, pos + 8)[0]


def _has_scalar(event: Any) -> bool:
    return any(value.WhichOneof("value") == "simple_value"
               or value.metadata.plugin_data.plugin_name == "scalars"
               for value in event.summary.value)


def _tensor_scalar(tensor: Any) -> float | None:
    """The value of a scalar TensorProto, or None if it is not a numeric scalar."""
    if tensor.tensor_shape.dim or tensor.tensor_shape.unknown_rank:
        return None  # only rank-0 tensors are scalars
    for field in ("float_val", "double_val", "int64_val", "int_val", "half_val"):
        values = getattr(tensor, field)
        if len(values) == 1:
            if field == "half_val":  # stored as the uint16 bit pattern
                return _from_bits(tensor.dtype, values[0].to_bytes(2, "little"))
            return float(values[0])
    if tensor.tensor_content:
        return _from_bits(tensor.dtype, tensor.tensor_content)
    return None


# TensorFlow DataType enum -> struct format, for tensor_content bytes (little endian).
_DTYPE_FORMATS = {1: "<f", 2: "<d", 3: "<i", 9: "<q", 19: "<e"}
_DT_BFLOAT16 = 14


def _from_bits(dtype: int, raw: bytes) -> float | None:
    if dtype == _DT_BFLOAT16 and len(raw) == 2:  # the high half of a float32
        return struct.unpack("<f", b"\x00\x00" + raw)[0]
    fmt = _DTYPE_FORMATS.get(dtype)
    if fmt is None or struct.calcsize(fmt) != len(raw):
        return None
    return float(struct.unpack(fmt, raw)[0])


def scalars(event: Any, run: str) -> list[ScalarPoint]:
    """The scalar points in one event: TF2 tensor summaries of the ``scalars`` plugin and
    legacy ``simple_value`` summaries. Histograms, images, graphs, text: ignored."""
    if not event.HasField("summary"):
        return []
    points = []
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            number: float | None = value.simple_value
        elif kind == "tensor" and value.metadata.plugin_data.plugin_name == "scalars":
            number = _tensor_scalar(value.tensor)
        else:
            continue
        if number is not None:
            points.append(ScalarPoint(run=run, tag=value.tag, step=int(event.step),
                                      wall_time=float(event.wall_time), value=number))
    return points


class LogdirReader:
    """Follows every event file under a TensorBoard logdir: files and run directories
    may appear at any time, and the logdir itself may not exist yet."""

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        self.logdir = Path(logdir)
        self._tails: dict[str, tuple[str, EventFileTail]] = {}  # path -> (run, tail)

    def _scan(self) -> None:
        # os.walk yields nothing for a logdir that does not exist (yet)
        for root, dirs, files in os.walk(self.logdir):
            dirs[:] = sorted(d for d in dirs if not d.startswith(_WORKER_TEMP_PREFIX))
            for name in sorted(files):
                if not name.startswith(EVENT_FILE_MARKER):
                    continue
                path = os.path.join(root, name)
                if path not in self._tails:
                    run = Path(root).relative_to(self.logdir).as_posix()
                    self._tails[path] = (run, EventFileTail(path))

    def files(self) -> list[str]:
        """The event files found so far."""
        return list(self._tails)

    def poll(self) -> list[ScalarPoint]:
        """Scalar points written since the previous poll, file by file in record order."""
        self._scan()
        points: list[ScalarPoint] = []
        for run, tail in self._tails.values():
            while True:  # a chunk at a time: a long backlog is never all in memory
                events = tail.read()
                if not events:
                    break
                for event in events:
                    points.extend(scalars(event, run))
        return points
