"""The progress line of a copy: bytes so far, of how many, and the rate.

Rewritten in place with a carriage return (a terminal and a notebook cell's stream output
both honour it), at most twice a second, and ended with one summary line.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def human(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class Progress:
    """``start(total)``, ``add(n)`` per received block, ``finish(text)``."""

    def __init__(self, what: str, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every: float = 0.5) -> None:
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.every = every
        self.total = 0
        self.done = 0
        self.started = clock()
        self._shown = 0.0
        self._drawn = False

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, self.clock()

    def rate(self) -> float:
        return self.done / max(self.clock() - self.started, 1e-6)

    def add(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if now - self._shown >= self.every:
            self._shown = now
            self._draw()

    def _draw(self) -> None:
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        self.stream.write(f"\rcellship: {self.what}: {human(self.done)} of {human(self.total)}"
                          f"{share}, {human(self.rate())}/s   ")
        self.stream.flush()
        self._drawn = True

    def finish(self, text: str) -> None:
        prefix = "\r" if self._drawn else ""
        self.stream.write(f"{prefix}cellship: {text}" + " " * 8 + "\n")
        self.stream.flush()


class Quiet(Progress):
    """No output (the live mirror copies every few seconds)."""

    def _draw(self) -> None:
        pass

    def finish(self, text: str) -> None:
        pass
