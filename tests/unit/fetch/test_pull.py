"""The copy home, end to end on this machine: the real in-pod sender (run as a process,
as exec runs it in the pod) and the real receiver, with the faults a stream meets."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from cellship.fetch.pull import FetchError, Puller, Root
from cellship.inside import sender
from cellship.kube.errors import KubernetesUnreachable

SENDER = [sys.executable, sender.__file__]


def run(argv: list[str]) -> Iterator[bytes]:
    """What exec does: the command's stdout, in chunks as they come."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        while True:
            chunk = process.stdout.read1(64 * 1024)
            if not chunk:
                break
            yield chunk
        assert process.wait() == 0
    finally:  # a reader that stops early (a fault) leaves the sender a broken pipe
        process.stdout.close()
        process.wait()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pod(tmp_path: Path) -> Path:
    """The chief pod's job directory: a SavedModel-like tree, an event file, a backup."""
    root = tmp_path / "pod"
    (root / "output" / "digits" / "variables").mkdir(parents=True)
    (root / "output" / "digits" / "saved_model.pb").write_bytes(os.urandom(3000))
    (root / "output" / "digits" / "variables" / "variables.data").write_bytes(os.urandom(3 << 20))
    (root / "tensorboard" / "train").mkdir(parents=True)
    (root / "tensorboard" / "train" / "events.out.tfevents.1").write_bytes(b"e" * 5000)
    return root


def roots(pod: Path, home: Path) -> list[Root]:
    return [Root(str(pod / "output"), home / "output"),
            Root(str(pod / "tensorboard"), home / "tensorboard", append=True),
            Root(str(pod / "backup"), home / "backup")]


def test_files_arrive_whole_in_the_local_layout_and_again_only_when_changed(pod, tmp_path) -> None:
    home = tmp_path / "home"
    puller = Puller(run, SENDER, home / ".fetch")
    outcome = puller.pull(roots(pod, home))
    assert outcome.files == 3 and outcome.missing == [str(pod / "backup")]
    for rel in ("output/digits/saved_model.pb", "output/digits/variables/variables.data",
                "tensorboard/train/events.out.tfevents.1"):
        assert digest(home / rel) == digest(pod / rel), rel
    assert outcome.bytes == sum((pod / r).stat().st_size for r in (
        "output/digits/saved_model.pb", "output/digits/variables/variables.data",
        "tensorboard/train/events.out.tfevents.1"))
    # Nothing new: nothing sent. An event file that grew: only its new bytes.
    again = puller.pull(roots(pod, home))
    assert (again.files, again.bytes, again.unchanged) == (0, 0, 3)
    with open(pod / "tensorboard" / "train" / "events.out.tfevents.1", "ab") as handle:
        handle.write(b"f" * 700)
    grown = puller.pull(roots(pod, home))
    assert (grown.files, grown.bytes) == (1, 700)
    assert digest(home / "tensorboard/train/events.out.tfevents.1") == digest(
        pod / "tensorboard/train/events.out.tfevents.1")
    assert not list((home / ".fetch").glob("part-*"))  # no staging file left


def test_a_broken_stream_resumes_where_it_stopped(pod, tmp_path) -> None:
    breaks = [1 << 20]  # the first send breaks after 1 MiB

    def flaky(argv: list[str]) -> Iterator[bytes]:
        sent = 0
        for chunk in run(argv):
            if argv[2] == "send" and breaks and sent + len(chunk) > breaks[0]:
                breaks.pop()
                yield chunk[:max(0, (1 << 20) - sent)]
                raise KubernetesUnreachable("the exec stream broke", None)
            sent += len(chunk)
            yield chunk

    home = tmp_path / "home"
    waits: list[float] = []
    outcome = Puller(flaky, SENDER, home / ".fetch", sleep=waits.append).pull(roots(pod, home))
    assert waits == [1.0]  # one retry, after the first backoff
    big = "output/digits/variables/variables.data"
    assert digest(home / big) == digest(pod / big)
    total = sum(p.stat().st_size for p in pod.rglob("*") if p.is_file())
    assert outcome.bytes == total  # resumed: no byte sent twice


def test_a_stream_that_keeps_breaking_ends_in_one_sentence(pod, tmp_path) -> None:
    def broken(argv: list[str]) -> Iterator[bytes]:
        raise KubernetesUnreachable("connection refused", None)
        yield b""  # pragma: no cover

    with pytest.raises(FetchError) as caught:
        Puller(broken, SENDER, tmp_path / ".fetch", attempts=3, sleep=lambda _s: None).pull(
            roots(pod, tmp_path))
    assert "3 times" in str(caught.value) and "connection refused" in str(caught.value)


def test_damaged_bytes_are_caught_by_the_checksum_and_sent_again(pod, tmp_path) -> None:
    damaged = [True]

    def corrupting(argv: list[str]) -> Iterator[bytes]:
        for chunk in run(argv):
            if argv[2] == "send" and damaged and len(chunk) > 5000:
                damaged.pop()
                chunk = chunk[:4000] + bytes([chunk[4000] ^ 0xFF]) + chunk[4001:]
            yield chunk

    home = tmp_path / "home"
    Puller(corrupting, SENDER, home / ".fetch").pull(roots(pod, home))
    assert not damaged
    for path in pod.rglob("*"):
        if path.is_file():
            assert digest(home / path.relative_to(pod)) == digest(path), path
