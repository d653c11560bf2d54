"""The TensorFlow-free event file reader: real TFRecord bytes (built here from
tensorboard's protos, plus one file Keras 3 wrote), growing, cut short, damaged."""

from __future__ import annotations

import base64
import importlib.util
import json
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2, tensor_pb2

from cellship.errors import MissingDependency
from cellship.inside.eventfile import EventFileTail, LogdirReader, crc32c, frame_record, masked_crc32c
from cellship.watch.metrics import ScalarPoint

# events.out.tfevents.*.v2 written by Keras 3's TensorBoard callback (TF 2.21) into
# logs/validation during fit(epochs=2, validation_split=0.25): file_version, then per epoch
# evaluation_loss_vs_iterations (step = iterations) and epoch_loss (step = epoch).
KERAS3_VALIDATION = base64.b64decode(
    "PgAAAAAAAADZ0kDnCQAAgCS6wdpBGg1icmFpbi5FdmVudDoyUiQKInRlbnNvcmZsb3cuY29yZS51dGlsLmV2ZW50"
    "c193cml0ZXJ805WURwAAAAAAAAC6w/ubCdTUqCS6wdpBEAIqOgo4Ch1ldmFsdWF0aW9uX2xvc3NfdnNfaXRlcmF0"
    "aW9uc0IKCAESACIEiAI9P0oLCgkKB3NjYWxhcnMazikRMgAAAAAAAAAkGVbsCcBCqSS6wdpBKicKJQoKZXBvY2hf"
    "bG9zc0IKCAESACIEiAI9P0oLCgkKB3NjYWxhcnMWoadSRwAAAAAAAAC6w/ubCcJQtSS6wdpBEAQqOgo4Ch1ldmFs"
    "dWF0aW9uX2xvc3NfdnNfaXRlcmF0aW9uc0IKCAESACIEYpUoP0oLCgkKB3NjYWxhcnOJmmANNAAAAAAAAABeMxdc"
    "Cad2tSS6wdpBEAEqJwolCgplcG9jaF9sb3NzQgoIARIAIgRilSg/SgsKCQoHc2NhbGFyc5ynFH4=")


# -- building real event files -----------------------------------------------------------
def scalar_event(tag: str, step: int, value: float, wall_time: float = 1000.0) -> bytes:
    """What TF2's tf.summary.scalar writes: a float32 scalar tensor, scalars plugin."""
    event = event_pb2.Event(wall_time=wall_time, step=step)
    v = event.summary.value.add(tag=tag)
    v.metadata.plugin_data.plugin_name = "scalars"
    v.tensor.dtype = 1  # DT_FLOAT
    v.tensor.tensor_content = struct.pack("<f", value)
    return frame_record(event.SerializeToString())


def version_event() -> bytes:
    return frame_record(event_pb2.Event(wall_time=999.0, file_version="brain.Event:2")
                        .SerializeToString())


def append(path: Path, *records: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        for record in records:
            handle.write(record)


def event_file(directory: Path, name: str = "events.out.tfevents.1.host.1.0.v2") -> Path:
    return directory / name


# -- CRC ---------------------------------------------------------------------------------
def test_crc32c_matches_published_vectors():
    assert crc32c(b"123456789") == 0xE3069283          # the CRC catalogue's check value
    assert crc32c(bytes(32)) == 0x8A9136AA              # RFC 3720, B.4: 32 bytes of zeros
    assert crc32c(bytes(range(32))) == 0x46DD794E       # RFC 3720, B.4: 0..31
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == crc32c(b"123456789")


def test_frame_matches_what_tensorflow_writes():
    first_length = struct.unpack_from("<Q", KERAS3_VALIDATION)[0]
    first = KERAS3_VALIDATION[:12 + first_length + 4]
    assert frame_record(first[12:-4]) == first
    assert masked_crc32c(first[:8]) == struct.unpack_from("<I", first, 8)[0]


# -- reading -----------------------------------------------------------------------------
def test_reads_a_file_keras_wrote(tmp_path: Path):
    path = event_file(tmp_path / "validation")
    append(path, KERAS3_VALIDATION)
    points = LogdirReader(tmp_path).poll()
    assert [(p.run, p.tag, p.step) for p in points] == [
        ("validation", "evaluation_loss_vs_iterations", 2), ("validation", "epoch_loss", 0),
        ("validation", "evaluation_loss_vs_iterations", 4), ("validation", "epoch_loss", 1)]
    assert points[0].value == pytest.approx(0.73832, abs=1e-5)
    assert points[0].value == points[1].value  # the same evaluation, logged twice
    assert points[1].wall_time == pytest.approx(1795614866.6447, abs=1e-3)


def test_incremental_reads_while_the_file_grows(tmp_path: Path):
    path = event_file(tmp_path)
    append(path, version_event(), scalar_event("loss", 0, 1.0))
    tail = EventFileTail(path)
    first = tail.read()
    assert [e.WhichOneof("what") for e in first] == ["file_version", "summary"]
    assert tail.read() == []
    offset = tail.offset
    assert offset == path.stat().st_size
    append(path, scalar_event("loss", 1, 0.5), scalar_event("loss", 2, 0.25))
    second = tail.read()
    assert [e.step for e in second] == [1, 2]
    assert tail.offset == path.stat().st_size > offset


@pytest.mark.parametrize("cut", [3, 12, 20])  # inside the header, after it, inside the data
def test_truncated_tail_is_left_for_the_next_read(tmp_path: Path, cut: int):
    path = event_file(tmp_path)
    whole = scalar_event("loss", 7, 0.5)
    append(path, scalar_event("loss", 6, 1.0), whole[:cut])
    reader = LogdirReader(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a write in progress is not damage
        assert [p.step for p in reader.poll()] == [6]
        assert reader.poll() == []
        append(path, whole[cut:-1])  # all but the last byte of the data checksum
        assert reader.poll() == []
        append(path, whole[-1:])
        points = reader.poll()
    assert [(p.step, p.value) for p in points] == [(7, 0.5)]


def test_damaged_record_warns_once_and_other_files_go_on(tmp_path: Path):
    bad = event_file(tmp_path / "train")
    good = event_file(tmp_path / "validation")
    damaged = bytearray(scalar_event("loss", 1, 0.5))
    damaged[20] ^= 0xFF
    append(bad, scalar_event("loss", 0, 1.0), bytes(damaged), scalar_event("loss", 2, 0.25))
    append(good, scalar_event("loss", 0, 2.0))
    reader = LogdirReader(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = reader.poll()
        append(bad, scalar_event("loss", 3, 0.1))
        append(good, scalar_event("loss", 1, 1.5))
        second = reader.poll()
        third = reader.poll()
    assert [(p.run, p.step) for p in first] == [("train", 0), ("validation", 0)]
    assert [(p.run, p.step) for p in second] == [("validation", 1)]
    assert third == []
    assert len(caught) == 1
    assert str(bad) in str(caught[0].message)


def test_big_records_are_checked_when_they_carry_scalars(tmp_path: Path):
    """Pure-Python CRC is slow: a damaged 200 kB graph is skipped like any non-scalar
    record (its length was checked), a damaged big record with a scalar is damage."""
    graph = bytearray(frame_record(event_pb2.Event(wall_time=1.0, graph_def=bytes(200_000))
                                   .SerializeToString()))
    graph[100_000] ^= 0xFF
    merged = event_pb2.Event(wall_time=2.0, step=1)  # TF1 style: scalar + image, one event
    merged.summary.value.add(tag="loss", simple_value=0.5)
    merged.summary.value.add(tag="picture").image.encoded_image_string = bytes(100_000)
    merged_record = bytearray(frame_record(merged.SerializeToString()))
    append(event_file(tmp_path), bytes(graph), scalar_event("loss", 0, 1.0))
    reader = LogdirReader(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [p.step for p in reader.poll()] == [0]
    append(event_file(tmp_path), bytes(merged_record))
    assert [(p.step, p.value) for p in reader.poll()] == [(1, 0.5)]
    merged_record[50_000] ^= 0xFF
    append(event_file(tmp_path), bytes(merged_record), scalar_event("loss", 2, 0.25))
    with pytest.warns(RuntimeWarning, match="bad record checksum"):
        assert reader.poll() == []


def test_long_files_are_read_a_chunk_at_a_time(tmp_path: Path, monkeypatch):
    path = event_file(tmp_path)
    big = event_pb2.Event(wall_time=1.0, step=5)
    big.summary.value.add(tag="loss", simple_value=0.5)
    big.summary.value.add(tag="picture").image.encoded_image_string = bytes(5000)
    append(path, *(scalar_event("loss", i, 1.0) for i in range(100)),
           frame_record(big.SerializeToString()), scalar_event("loss", 101, 1.0))
    tail = EventFileTail(path)
    sizes = []
    while events := tail.read(max_bytes=1000):
        sizes.append(len(events))
    assert sum(sizes) == 102 and len(sizes) > 5
    assert 1 in sizes  # the 5 kB record came alone, whole, though larger than a chunk
    assert tail.offset == path.stat().st_size
    monkeypatch.setattr("cellship.inside.eventfile._READ_BYTES", 1000)
    assert len(LogdirReader(tmp_path).poll()) == 102  # one poll catches up completely


def test_damaged_length_is_damage_too(tmp_path: Path):
    path = event_file(tmp_path)
    record = bytearray(scalar_event("loss", 0, 1.0))
    record[9] ^= 0x01  # the length's checksum
    append(path, bytes(record))
    tail = EventFileTail(path)
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert tail.read() == []
    assert tail.broken


def test_vanished_file_reads_nothing(tmp_path: Path):
    path = event_file(tmp_path)
    append(path, scalar_event("loss", 0, 1.0))
    tail = EventFileTail(path)
    assert len(tail.read()) == 1
    path.unlink()
    assert tail.read() == []
    assert EventFileTail(tmp_path / "never-there").read() == []


def test_missing_logdir_appears_later(tmp_path: Path):
    logdir = tmp_path / "not-yet"
    reader = LogdirReader(logdir)
    assert reader.poll() == []
    append(event_file(logdir / "train"), scalar_event("loss", 0, 1.0))
    assert [(p.run, p.tag) for p in reader.poll()] == [("train", "loss")]
    # a second run directory appears during training
    append(event_file(logdir / "validation"), scalar_event("loss", 0, 2.0))
    assert [(p.run, p.value) for p in reader.poll()] == [("validation", 2.0)]


def test_run_names_are_directories_relative_to_the_logdir(tmp_path: Path):
    append(event_file(tmp_path), scalar_event("a", 0, 1.0))
    append(event_file(tmp_path / "train"), scalar_event("a", 0, 1.0))
    append(event_file(tmp_path / "sweep" / "lr-0.1"), scalar_event("a", 0, 1.0))
    (tmp_path / "train" / "notes.txt").write_text("not an event file")
    (tmp_path / "train" / "projector_config.pbtxt").write_text("")
    runs = sorted(p.run for p in LogdirReader(tmp_path).poll())
    assert runs == [".", "sweep/lr-0.1", "train"]


def test_a_second_file_in_the_same_run(tmp_path: Path):
    """A restarted writer starts a new file next to the old one: both are read."""
    append(event_file(tmp_path / "train", "events.out.tfevents.1.h.1.0.v2"),
           scalar_event("loss", 0, 1.0))
    append(event_file(tmp_path / "train", "events.out.tfevents.2.h.2.0.v2"),
           scalar_event("loss", 1, 0.5))
    assert [(p.run, p.step) for p in LogdirReader(tmp_path).poll()] == [("train", 0),
                                                                        ("train", 1)]


def test_keras_worker_temp_dirs_are_skipped(tmp_path: Path):
    append(event_file(tmp_path / "train"), scalar_event("loss", 0, 1.0))
    append(event_file(tmp_path / "workertemp_1" / "train"), scalar_event("loss", 0, 9.0))
    append(event_file(tmp_path / "workertemp_2"), scalar_event("loss", 0, 9.0))
    assert [p.value for p in LogdirReader(tmp_path).poll()] == [1.0]


def test_legacy_simple_value_scalars(tmp_path: Path):
    event = event_pb2.Event(wall_time=5.0, step=3)
    event.summary.value.add(tag="old_loss", simple_value=0.75)
    append(event_file(tmp_path), frame_record(event.SerializeToString()))
    assert LogdirReader(tmp_path).poll() == [
        ScalarPoint(run=".", tag="old_loss", step=3, wall_time=5.0, value=0.75)]


def test_only_scalars_are_read(tmp_path: Path):
    events = [event_pb2.Event(wall_time=1.0, file_version="brain.Event:2"),
              event_pb2.Event(wall_time=1.0, graph_def=b"\x0a\x00")]
    hist = event_pb2.Event(wall_time=2.0, step=1)
    v = hist.summary.value.add(tag="weights")
    v.metadata.plugin_data.plugin_name = "histograms"
    v.tensor.dtype = 2
    v.tensor.tensor_shape.dim.add(size=2)
    v.tensor.tensor_shape.dim.add(size=3)
    v.tensor.tensor_content = struct.pack("<6d", *range(6))
    image = hist.summary.value.add(tag="picture")
    image.image.height = 1
    image.image.encoded_image_string = b"\x89PNG"
    text = hist.summary.value.add(tag="note")
    text.metadata.plugin_data.plugin_name = "text"
    text.tensor.dtype = 7
    text.tensor.string_val.append(b"hello")
    vector = hist.summary.value.add(tag="not_a_scalar")  # scalars plugin, shape [2]
    vector.metadata.plugin_data.plugin_name = "scalars"
    vector.tensor.dtype = 1
    vector.tensor.tensor_shape.dim.add(size=2)
    vector.tensor.tensor_content = struct.pack("<2f", 1.0, 2.0)
    filled = hist.summary.value.add(tag="filled")  # shape [2], both 3.0: TF's short form
    filled.metadata.plugin_data.plugin_name = "scalars"
    filled.tensor.dtype = 1
    filled.tensor.tensor_shape.dim.add(size=2)
    filled.tensor.float_val.append(3.0)
    other = hist.summary.value.add(tag="other_plugin")  # a float scalar, not a "scalars"
    other.metadata.plugin_data.plugin_name = "custom"
    other.tensor.dtype = 1
    other.tensor.float_val.append(4.0)
    hist.summary.value.add(tag="loss", simple_value=0.5)  # the one scalar of the event
    events.append(hist)
    append(event_file(tmp_path), *(frame_record(e.SerializeToString()) for e in events))
    assert [(p.tag, p.value) for p in LogdirReader(tmp_path).poll()] == [("loss", 0.5)]


def _tensor(dtype: int, **fields) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    for name, value in fields.items():
        if name == "tensor_content":
            tensor.tensor_content = value
        else:
            getattr(tensor, name).append(value)
    return tensor


@pytest.mark.parametrize("tensor, expected", [
    (_tensor(1, float_val=0.5), 0.5),
    (_tensor(2, double_val=0.1), 0.1),
    (_tensor(3, int_val=-7), -7.0),
    (_tensor(9, int64_val=2**40), float(2**40)),
    (_tensor(1, tensor_content=struct.pack("<f", 1.5)), 1.5),
    (_tensor(2, tensor_content=struct.pack("<d", 0.1)), 0.1),
    (_tensor(3, tensor_content=struct.pack("<i", -3)), -3.0),
    (_tensor(9, tensor_content=struct.pack("<q", 2**40)), float(2**40)),
    (_tensor(19, tensor_content=struct.pack("<e", 0.25)), 0.25),
    (_tensor(19, half_val=0x3C00), 1.0),                                 # float16 1.0
    (_tensor(14, tensor_content=struct.pack("<f", 2.5)[2:]), 2.5),       # bfloat16
    (_tensor(1, tensor_content=struct.pack("<f", float("nan"))), "nan"),
])
def test_scalar_tensor_dtypes(tmp_path: Path, tensor, expected):
    event = event_pb2.Event(wall_time=1.0, step=0)
    value = event.summary.value.add(tag="x")
    value.metadata.plugin_data.plugin_name = "scalars"
    value.tensor.CopyFrom(tensor)
    append(event_file(tmp_path), frame_record(event.SerializeToString()))
    (point,) = LogdirReader(tmp_path).poll()
    if expected == "nan":
        assert point.value != point.value
    else:
        assert point.value == expected


def test_string_scalar_tensor_is_ignored(tmp_path: Path):
    event = event_pb2.Event(wall_time=1.0, step=0)
    value = event.summary.value.add(tag="x")
    value.metadata.plugin_data.plugin_name = "scalars"
    value.tensor.CopyFrom(_tensor(7, tensor_content=b"abcd"))  # DT_STRING
    append(event_file(tmp_path), frame_record(event.SerializeToString()))
    assert LogdirReader(tmp_path).poll() == []


def test_missing_tensorboard_names_the_install(tmp_path: Path, monkeypatch):
    path = event_file(tmp_path)
    append(path, scalar_event("loss", 0, 1.0))
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto.event_pb2", None)
    with pytest.raises(MissingDependency, match="pip install tensorboard"):
        EventFileTail(path).read()


def test_reading_does_not_import_tensorflow(tmp_path: Path):
    append(event_file(tmp_path / "train"), KERAS3_VALIDATION)
    code = textwrap.dedent(f"""
        import json, sys
        from cellship.inside.eventfile import LogdirReader
        points = LogdirReader({str(tmp_path)!r}).poll()
        heavy = [m for m in ("tensorflow", "keras", "tf_keras", "IPython") if m in sys.modules]
        print(json.dumps([len(points), heavy]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [4, []]


@pytest.mark.tf
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="TensorFlow is not installed")
def test_reads_what_tf_summary_writes(tmp_path: Path):
    """What TensorFlow itself writes, growing between polls (the writer flushes)."""
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import tensorflow as tf
        writer = tf.summary.create_file_writer({str(tmp_path / "train")!r})
        with writer.as_default():
            for step in range(3):
                tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
                tf.summary.scalar("count", tf.constant(step * 10, tf.int64), step=step)
                tf.summary.scalar("precise", tf.constant(0.1, tf.float64), step=step)
                tf.summary.histogram("weights", tf.random.normal([50]), step=step)
                tf.summary.text("note", "hello", step=step)
            writer.flush()
            print("HALF", flush=True)
            sys.stdin.readline()
            tf.summary.scalar("loss", 0.125, step=3)
        writer.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "HALF"
        reader = LogdirReader(tmp_path)
        first = reader.poll()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    second = reader.poll()
    assert [(p.run, p.tag, p.step) for p in first[:3]] == [
        ("train", "loss", 0), ("train", "count", 0), ("train", "precise", 0)]
    assert sorted({p.tag for p in first}) == ["count", "loss", "precise"]
    assert [p.value for p in first if p.tag == "loss"] == pytest.approx([1.0, 0.5, 1 / 3])
    assert [p.value for p in first if p.tag == "count"] == [0.0, 10.0, 20.0]
    # tf.summary.scalar stores float32 whatever the input dtype
    assert [p.value for p in first if p.tag == "precise"][0] == pytest.approx(0.1, abs=1e-7)
    assert [p.value for p in first if p.tag == "precise"][0] != 0.1
    assert [(p.tag, p.step, p.value) for p in second] == [("loss", 3, 0.125)]
