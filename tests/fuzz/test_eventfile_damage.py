"""The event-file reader (cellship.inside.eventfile) on files written by TensorBoard's own
writer, then cut short or damaged at every byte offset, and on generated garbage.

What must hold: the reader never raises, never hangs (each poll returns), never repeats a
point and never invents one. A file cut at byte k yields exactly the points of the records
complete before k, and once the rest is appended, exactly the others. A file with one byte
flipped at offset k yields exactly the points of the records before the damaged one (the
checksums catch the damage) and warns once.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tensorboard")

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from cellship.inside.eventfile import EventFileTail, LogdirReader
from tests.fuzz.budget import examples

POLL_DEADLINE_S = 5.0  # a functional bound: a poll of a few KiB that takes longer is a hang


def _write_events(logdir: Path, count: int) -> Path:
    writer = EventFileWriter(str(logdir))
    for step in range(count):
        value = summary_pb2.Summary.Value(tag="loss" if step % 2 else "accuracy",
                                          simple_value=1.0 / (step + 1))
        writer.add_event(event_pb2.Event(step=step, wall_time=1000.0 + step,
                                         summary=summary_pb2.Summary(value=[value])))
    writer.close()
    (path,) = logdir.glob("events.out.tfevents.*")
    return path


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list, list[int]]:
    """(file bytes, its points, the end offset of each record)."""
    path = _write_events(tmp_path_factory.mktemp("events"), 24)
    data = path.read_bytes()
    points = LogdirReader(path.parent).poll()
    assert [p.step for p in points] == list(range(24))
    ends, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 8], "little")
        pos += 12 + length + 4
        ends.append(pos)
    assert ends[-1] == len(data)
    print(f"event file: {len(data)} bytes, {len(ends)} records")
    return data, points, ends


def _poll(reader: LogdirReader) -> list:
    started = time.monotonic()
    points = reader.poll()
    assert time.monotonic() - started < POLL_DEADLINE_S, "a poll hung"
    return points


def _expected(points: list, ends: list[int], cut: int) -> list:
    """The points of the records that end at or before byte ``cut`` (record 0 is the
    file_version event, which has none)."""
    complete = sum(1 for end in ends if end <= cut)
    return points[:max(0, complete - 1)]


def test_a_file_cut_at_every_byte_offset_then_completed(original, tmp_path: Path) -> None:
    data, points, ends = original
    for cut in range(len(data) + 1):
        logdir = tmp_path / f"cut{cut}"
        logdir.mkdir()
        path = logdir / "events.out.tfevents.1.host"
        path.write_bytes(data[:cut])
        reader = LogdirReader(logdir)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a cut is a write in progress, not damage
            first = _poll(reader)
            assert first == _expected(points, ends, cut), cut
            with path.open("ab") as handle:
                handle.write(data[cut:])
            rest = _poll(reader)
        assert first + rest == points, f"cut at {cut}: points repeated, lost or invented"
        assert _poll(reader) == []


def test_a_byte_flipped_at_every_offset(original, tmp_path: Path) -> None:
    data, points, ends = original
    path = tmp_path / "events.out.tfevents.1.host"
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        path.write_bytes(bytes(damaged))
        tail = EventFileTail(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.monotonic()
            events = []
            while True:
                batch = tail.read()
                if not batch:
                    break
                events.extend(batch)
            assert time.monotonic() - started < POLL_DEADLINE_S, "a read hung"
        record = next(i for i, end in enumerate(ends) if offset < end)
        steps = [e.step for e in events if e.HasField("summary")]
        assert steps == [p.step for p in points[:max(0, record - 1)]], offset
        assert tail.broken and len(caught) == 1 and "damaged" in str(caught[0].message), offset
        assert tail.read() == []  # reported once, then left alone


@settings(max_examples=examples(200))
@given(prefix=st.integers(0, 24), garbage=st.binary(max_size=300), then_more=st.binary(max_size=50))
def test_garbage_after_valid_records_never_crashes_or_invents(original, tmp_path_factory, prefix: int,
                                                               garbage: bytes, then_more: bytes) -> None:
    data, points, ends = original
    logdir = tmp_path_factory.mktemp("garbage")
    path = logdir / "events.out.tfevents.1.host"
    path.write_bytes(data[:ends[prefix]] + garbage)
    reader = LogdirReader(logdir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = _poll(reader)
        with path.open("ab") as handle:
            handle.write(then_more)
        got += _poll(reader)
    assert got == points[:len(got)], "a point was invented or repeated"
    assert len(got) >= max(0, prefix)  # the valid records before the garbage are all read
