"""The receiving end of cellship/inside/sender.py's ``send`` stream: frames -> files.

Each file is written to its target (a staging file, renamed into place by the caller once
complete, or the final file itself for append-only event files), from the offset the
sender confirms, and checked against the SHA-256 of the whole file that ends its frame:
a resumed copy hashes the bytes it already had from disk, so what is declared complete is
byte for byte the pod's file. Nothing here holds a file in memory: bytes go to disk as
they arrive.
"""

from __future__ import annotations

import errno
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from cellship.errors import BackendError

HASH_BLOCK = 1 << 20


class StreamBroken(BackendError):
    """The stream ended in the middle of a frame (the caller resumes)."""


class Mismatch(BackendError):
    """A file's bytes do not hash to what the sender sent (the caller starts it again)."""

    def __init__(self, message: str, remote: str) -> None:
        super().__init__(message)
        self.remote = remote


class DiskFull(BackendError):
    """The local disk could not take the file."""


@dataclass
class Received:
    """What one stream delivered: remote path -> "done" or "missing"."""

    outcome: dict[str, str]


class _Stream:
    """Lines and exact byte runs over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = bytearray()

    def _fill(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            raise StreamBroken("the file stream ended in the middle of a file")
        self._buf += chunk

    def readline(self) -> bytes:
        start = 0
        while True:
            at = self._buf.find(b"\n", start)
            if at >= 0:
                line = bytes(self._buf[:at])
                del self._buf[:at + 1]
                return line
            start = len(self._buf)
            self._fill()

    def copy(self, count: int, sink: Callable[[memoryview], None]) -> None:
        while count > 0:
            if not self._buf:
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise StreamBroken("the file stream ended in the middle of a file")
                if len(chunk) <= count:  # the common case: straight to disk, no buffering
                    sink(memoryview(chunk))
                    count -= len(chunk)
                    continue
                self._buf += chunk
            take = min(count, len(self._buf))
            with memoryview(self._buf) as view:
                sink(view[:take])
            del self._buf[:take]
            count -= take


def _prefix_digest(path: Path, length: int) -> "hashlib._Hash":
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        left = length
        while left > 0:
            block = handle.read(min(HASH_BLOCK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest


def receive(chunks: Iterator[bytes], targets: dict[str, Path],
            on_bytes: Callable[[int], None] = lambda _n: None,
            on_done: Callable[[str, Path], None] = lambda _r, _p: None) -> Received:
    """Write every file of the stream to ``targets[remote path]``; ``on_done`` is called
    for each file whose digest matched. Raises StreamBroken, Mismatch or DiskFull."""
    stream = _Stream(chunks)
    outcome: dict[str, str] = {}
    while True:
        line = stream.readline()
        if line == b"E":
            return Received(outcome)
        kind, _, rest = line.partition(b" ")
        if kind == b"M":
            outcome[json.loads(rest)["path"]] = "missing"
            continue
        if kind != b"F":
            raise StreamBroken(f"the file stream is garbled (got {line[:60]!r})")
        header = json.loads(rest)
        remote, offset = header["path"], int(header["offset"])
        target = targets[remote]
        _write_file(stream, remote, target, offset, on_bytes)
        outcome[remote] = "done"
        on_done(remote, target)


def _write_file(stream: _Stream, remote: str, target: Path, offset: int,
                on_bytes: Callable[[int], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.touch()
    digest = _prefix_digest(target, offset) if offset else hashlib.sha256()
    try:
        with open(target, "r+b") as handle:
            handle.truncate(offset)
            handle.seek(offset)

            def sink(view: memoryview) -> None:
                handle.write(view)
                digest.update(view)
                on_bytes(len(view))

            while True:
                line = stream.readline()
                kind, _, rest = line.partition(b" ")
                if kind == b"C":
                    stream.copy(int(rest), sink)
                elif kind == b"H":
                    expected = rest.split()[0].decode()
                    break
                else:
                    raise StreamBroken(f"the file stream is garbled inside {remote}")
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            target.unlink(missing_ok=True)
            raise DiskFull(f"The local disk is full: {target} could not be written "
                           f"({err.strerror}). The partial file was removed; free some space "
                           "and fetch again.") from err
        raise
    if digest.hexdigest() != expected:
        raise Mismatch(f"{remote} arrived with a different SHA-256 than the pod's file",
                       remote)
