"""Following the log files of a job's replicas.

A replica's stdout and stderr go to one file; this module turns a set of growing files
into one stream of complete lines, in the order they became available, each tagged with
its replica. Progress bars written with carriage returns and backspaces (Keras's Progbar)
are collapsed to their final state so a notebook shows one line, not thousands.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

# TensorFlow's C++ (absl) log lines at INFO and WARNING level: "I0000 00:00:17.1 123 file.cc:12] ..."
_TF_NOISE = re.compile(r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]"
                       r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                       # second line of TF's CPU-features notice
                       r"|To enable the following instructions: .* rebuild TensorFlow with)")


def is_tf_noise(text: str) -> bool:
    """TensorFlow's C++ informational chatter, hidden from notebooks by default."""
    return bool(_TF_NOISE.match(text))


DONE_CHECK_SECONDS = 0.25


@dataclass(frozen=True)
class LogLine:
    replica: str   # label: "worker 0", "chief", "ps 1"
    text: str

    def __str__(self) -> str:
        return f"[{self.replica}] {self.text}"


def _apply_backspaces(text: str) -> str:
    out: list[str] = []
    for char in text:
        if char == "\x08":
            if out:
                out.pop()
        else:
            out.append(char)
    return "".join(out)


def collapse(line: str) -> str:
    """What a terminal would show for ``line``: backspaces applied, then the last
    non-blank carriage-return segment."""
    if "\x08" in line:
        line = "\r".join(_apply_backspaces(s) for s in line.split("\r"))
    if "\r" in line:
        segments = [s for s in line.split("\r") if s.strip()]
        line = segments[-1] if segments else ""
    return line.rstrip()


class _Tail:
    """Incremental reader of one file: returns complete lines as they are appended."""

    def __init__(self, label: str, path: str) -> None:
        self.label = label
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self, final: bool = False) -> list[LogLine]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        out = []
        for raw in lines:
            text = collapse(raw.decode("utf-8", errors="replace"))
            if text:
                out.append(LogLine(self.label, text))
        return out


def follow_files(files: Sequence[tuple[str, str]], is_done: Callable[[], bool],
                 follow: bool = True, poll: float = 0.1, tf_noise: bool = False,
                 on_idle: Callable[[], None] | None = None) -> Iterator[LogLine]:
    """Yield lines of ``files`` ([(label, path)]) until ``is_done()`` (then drain once).

    With ``follow=False``, yields what the files hold now and returns. TensorFlow's C++
    INFO/WARNING lines are skipped unless ``tf_noise``. ``on_idle`` is called whenever a
    poll found nothing new (a follower's chance to refresh a display).
    """
    tails = [_Tail(label, path) for label, path in files]
    done = not follow
    last_check = 0.0
    while True:
        # Asking whether the job ended costs a store query: at most a few times a second.
        if follow and time.monotonic() - last_check >= DONE_CHECK_SECONDS:
            done = is_done()
            last_check = time.monotonic()
        got = False
        for tail in tails:
            for line in tail.read(final=done):
                got = True
                if tf_noise or not is_tf_noise(line.text):
                    yield line
        if done:
            return
        if not got:
            if on_idle is not None:
                on_idle()
            time.sleep(poll)


def _tail_lines(path: str, max_bytes: int) -> list[str] | None:
    """The last ``max_bytes`` of a log as collapsed lines; None if it cannot be read."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return [collapse(line) for line in text.splitlines()]


def last_error_line(path: str, max_bytes: int = 65536) -> str | None:
    """The exception line (``ValueError: ...``) closing a Python traceback in a log."""
    lines = _tail_lines(path, max_bytes)
    if lines is None or not any(line.startswith("Traceback (most recent call last)") for line in lines):
        return None
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure)\b.*", line):
            return line
    return None


def traceback_tail(path: str, max_lines: int = 40, max_bytes: int = 262144) -> str | None:
    """The last Python traceback in a log, as the user would want to see it."""
    lines = _tail_lines(path, max_bytes)
    if lines is None:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return None
    block = [line for line in lines[starts[-1]:] if line]
    if len(block) > max_lines:
        block = block[:3] + ["  ..."] + block[-(max_lines - 4):]
    return "\n".join(block)


def read_from(path: str, offset: int, final: bool = False,
              max_bytes: int = 1 << 20) -> tuple[list[str], int]:
    """Complete lines of ``path`` from byte ``offset`` (collapsed like :class:`_Tail`'s),
    and the offset just past the last complete line: the resumable cursor a client that
    reconnects hands back (server-sent events' Last-Event-ID). With ``final`` a last line
    without newline counts as complete. At most ``max_bytes`` are read per call."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(max_bytes)
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if final and len(data) < max_bytes:
        end = len(data) - 1 if data else -1
    if end < 0:
        if len(data) == max_bytes:  # one line longer than max_bytes: pass it on in pieces
            end = len(data) - 1
        else:
            return [], offset
    chunk = data[:end + 1]
    lines = [collapse(raw.decode("utf-8", errors="replace")) for raw in chunk.split(b"\n")]
    return [line for line in lines if line], offset + len(chunk)
