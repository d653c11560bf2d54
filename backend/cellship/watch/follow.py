"""Follow a job or a batch to its end; Ctrl-C (a kernel interrupt) cancels it.

The one copy of that flow, shared by ``cellship train``, ``cellship batch`` (and ``batch
retry``), ``%%train``, ``%job ID attach`` and ``%batch``. Each caller does its own printing
(stderr in a shell, the cell's output in a notebook) around the :class:`Followed` outcome,
so this module prints nothing and never imports IPython (ipyparallel's habit: Ctrl-C
reaches the remote work; tensorboard's: outcomes are small frozen dataclasses).

Works on anything with ``cancel()``: a :class:`cellship.train.api.Job`, a
:class:`cellship.runs.api.Batch`. A batch run in the foreground already stops its runs
when interrupted (its coordinator does, on the way out), so its ``cancel()`` here only
confirms the settled record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Protocol, TypeVar

INTERRUPTED_EXIT_CODE = 130  # what a shell reports for a command ended by SIGINT


class _Record(Protocol):
    @property
    def status(self) -> str: ...


R = TypeVar("R", bound=_Record)
R_co = TypeVar("R_co", bound=_Record, covariant=True)


class Cancellable(Protocol[R_co]):
    def cancel(self) -> R_co: ...


@dataclass(frozen=True)
class Followed(Generic[R]):
    """How following ended. ``record`` is the final record: the one the stream ended
    with, or the cancelled one after an interrupt; None when interrupted without
    cancelling (the work keeps running)."""

    record: R | None
    interrupted: bool = False
    cancelled: bool = False

    @property
    def status(self) -> str | None:
        return None if self.record is None else self.record.status

    @property
    def succeeded(self) -> bool:
        return not self.interrupted and self.status == "succeeded"

    @property
    def exit_code(self) -> int:
        """What a command that followed the work returns: 130 when interrupted, 0 when it
        succeeded, 1 otherwise."""
        if self.interrupted:
            return INTERRUPTED_EXIT_CODE
        return 0 if self.succeeded else 1


def follow(work: Cancellable[R], stream: Callable[[], R], *,
           cancel: bool | Callable[[], bool] = True,
           on_interrupt: Callable[[bool], None] | None = None) -> Followed[R]:
    """Run ``stream`` (which follows ``work`` and returns its final record) until it
    returns; on KeyboardInterrupt call ``on_interrupt(cancel)`` (a caller's "cancelling
    ..." line, printed before a cancel that may take a few seconds), then ``work.cancel()``
    unless ``cancel`` is False (detached work: stop following, keep it running).

    ``cancel`` may be a function asked at the interrupt: work detached while it was being
    followed (the notebook view's Detach button marks the job, then interrupts) is left
    running."""
    try:
        return Followed(stream())
    except KeyboardInterrupt:
        if callable(cancel):
            cancel = cancel()
        if on_interrupt is not None:
            on_interrupt(cancel)
        if not cancel:
            return Followed(None, interrupted=True)
        return Followed(work.cancel(), interrupted=True, cancelled=True)
