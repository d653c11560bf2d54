"""cellship.watch.follow: following work to its end, and Ctrl-C cancelling it (or only
stopping the following, for detached work), with the caller's line printed first."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cellship.watch.follow import Followed, follow


@dataclass(frozen=True)
class Record:
    status: str


@dataclass
class Work:
    events: list[str] = field(default_factory=list)

    def cancel(self) -> Record:
        self.events.append("cancel")
        return Record("cancelled")


def _interrupt() -> Record:
    raise KeyboardInterrupt


@pytest.mark.parametrize(("status", "code"), [("succeeded", 0), ("failed", 1), ("cancelled", 1)])
def test_followed_to_the_end(status: str, code: int) -> None:
    work = Work()
    outcome = follow(work, lambda: Record(status), on_interrupt=work.events.append)
    assert outcome == Followed(Record(status))
    assert (outcome.status, outcome.exit_code) == (status, code)
    assert outcome.succeeded is (status == "succeeded")
    assert work.events == []  # nothing cancelled, no interrupt line


def test_ctrl_c_prints_the_callers_line_then_cancels() -> None:
    work = Work()
    outcome = follow(work, _interrupt, on_interrupt=lambda cancelling: work.events.append(
        f"line (cancelling={cancelling})"))
    assert work.events == ["line (cancelling=True)", "cancel"]  # the line comes first
    assert outcome == Followed(Record("cancelled"), interrupted=True, cancelled=True)
    assert outcome.exit_code == 130 and not outcome.succeeded


def test_ctrl_c_on_detached_work_only_stops_following() -> None:
    work = Work()
    outcome = follow(work, _interrupt, cancel=False, on_interrupt=lambda cancelling: work.events
                     .append(f"line (cancelling={cancelling})"))
    assert work.events == ["line (cancelling=False)"]  # never cancelled
    assert outcome == Followed(None, interrupted=True)
    assert outcome.status is None and outcome.exit_code == 130


def test_other_errors_are_not_swallowed() -> None:
    def broken() -> Record:
        raise RuntimeError("the stream broke")

    work = Work()
    with pytest.raises(RuntimeError, match="the stream broke"):
        follow(work, broken)
    assert work.events == []
