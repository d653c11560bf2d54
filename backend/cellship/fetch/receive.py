"""The receiving end of cellship/inside/sender.py's ``send`` stream: frames -> files.

Each file is written to its target (a staging file, renamed into place by the caller once
complete, or the final file itself for append-only event files), from the offset the
sender confirms, and checked against the size and the digest of the whole file that end
its frame (CRC-32, or SHA-256 from an older sender; why CRC-32 is enough:
cellship/inside/sender.py): a resumed copy hashes the bytes it already had from disk, so
what is declared complete is the pod's file. Nothing here holds a file in memory: bytes go
to disk as they arrive, as views of the chunks they came in (no copy).
"""

from __future__ import annotations

import errno
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from cellship.errors import BackendError

HASH_BLOCK = 1 << 20
MAX_LINE = 1 << 16  # a header line longer than this is no header: the stream is garbled
CHECK = "crc32"  # the check cellship asks the sender for (see cellship/inside/sender.py)
NAMES = {"crc32": "CRC-32", "sha256": "SHA-256"}
Buffer = bytes | bytearray | memoryview


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
    """Lines and exact byte runs over an iterator of chunks, without copying the runs:
    each is handed on as views of the chunks it came in."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = iter(chunks)
        self._chunk = b""
        self._pos = 0

    def _next(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            raise StreamBroken("the file stream ended in the middle of a file")
        self._chunk = chunk if isinstance(chunk, bytes) else bytes(chunk)
        self._pos = 0

    def readline(self) -> bytes:
        at = self._chunk.find(b"\n", self._pos)
        if at >= 0:  # the common case: the whole line is in this chunk
            line = self._chunk[self._pos:at]
            self._pos = at + 1
            return line
        parts = bytearray(self._chunk[self._pos:])
        while True:
            self._next()
            at = self._chunk.find(b"\n")
            if at >= 0:
                parts += self._chunk[:at]
                self._pos = at + 1
                return bytes(parts)
            parts += self._chunk
            if len(parts) > MAX_LINE:
                raise StreamBroken(f"the file stream is garbled (got {bytes(parts[:60])!r})")

    def copy(self, count: int, sink: Callable[[memoryview], None]) -> None:
        while count > 0:
            if self._pos >= len(self._chunk):
                self._next()
            take = min(count, len(self._chunk) - self._pos)
            with memoryview(self._chunk) as view:
                sink(view[self._pos:self._pos + take])
            self._pos += take
            count -= take


class Crc32:
    """zlib's CRC-32 with hashlib's ``update``/``hexdigest`` (the sender's own)."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: Buffer) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return "%08x" % self.value


class Check(Protocol):
    def update(self, data: Buffer, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_check(name: str) -> Check:
    """The whole-file check the sender named in its ``F`` line (SHA-256 when it named none:
    a sender from before CRC-32)."""
    if name == "crc32":
        return Crc32()
    if name == "sha256":
        return hashlib.sha256()
    raise StreamBroken(f"the file stream uses a check this cellship does not know: {name!r}")


def _prefix_digest(path: Path, length: int, check: str) -> Check:
    digest = new_check(check)
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
        _write_file(stream, remote, target, offset, header.get("check", "sha256"), on_bytes)
        outcome[remote] = "done"
        on_done(remote, target)


def _write_file(stream: _Stream, remote: str, target: Path, offset: int, check: str,
                on_bytes: Callable[[int], None]) -> None:
    new_check(check)  # an unknown check fails here, before anything is written
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.touch()
    digest = _prefix_digest(target, offset, check) if offset else new_check(check)
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
                    expected, end = rest.split()[:2]
                    length = handle.tell()
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
    if length != int(end) or digest.hexdigest() != expected.decode():
        raise Mismatch(f"{remote} arrived with a different {NAMES[check]} or size than the "
                       "pod's file", remote)
