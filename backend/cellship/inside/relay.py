"""The metric relay's wire format: one marked log line per scalar point.

Why a relay through the log stream: on the local backend the kernel could read the job's
event files itself, but on Kubernetes it cannot reach the pods' files, only their logs. So
the job side reads its own event files (:mod:`cellship.inside.eventfile`) and prints each new
point as one marked line (the writer: :mod:`cellship.inside.bootstrap`); every backend
already delivers logs, so every backend delivers metrics too, in order with the log lines
around them. The reader side (:mod:`cellship.watch.metrics`) decodes them with the same
functions, so the two ends cannot drift.

Standard library only: this module is copied into every pod's shim package.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScalarPoint:
    run: str         # event file's directory relative to the logdir: "train", "validation", "."
    tag: str         # "epoch_loss"
    step: int
    wall_time: float  # seconds since the epoch, as the writer recorded it
    value: float


# -- relay ------------------------------------------------------------------------------
# An ASCII record separator starts the mark: no ordinary log line begins with it, and a
# terminal shows nothing for it if a relay line ever reaches one.
RELAY_MARK = "\x1ecellship-metric "


def encode_relay(point: ScalarPoint) -> str:
    """One log line (without newline) carrying ``point``. NaN and infinities are written
    as JSON's NaN/Infinity extensions, which :func:`decode_relay` reads back.

    A writer should print it as ``"\\n" + line + "\\n"`` when other output (a Keras
    progress bar ending in a carriage return) may share the stream: empty lines are dropped
    by the log follower, and the mark must start its line to be recognised.
    """
    body = {"run": point.run, "tag": point.tag, "step": int(point.step),
            "wall_time": float(point.wall_time), "value": float(point.value)}
    return RELAY_MARK + json.dumps(body, separators=(",", ":"))


def is_relay(text: str) -> bool:
    """Whether a log line is a relay line, a metric or a progress event (to be hidden
    from the log display)."""
    text = text.lstrip("\r\n")
    return text.startswith(RELAY_MARK) or text.startswith(EVENT_MARK)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def decode_relay(text: str) -> ScalarPoint | None:
    """The point carried by a relay line, or None for any other (or a damaged) line."""
    text = text.lstrip("\r\n")
    if not text.startswith(RELAY_MARK):
        return None
    try:
        body = json.loads(text[len(RELAY_MARK):])
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    run, tag, step = body.get("run"), body.get("tag"), body.get("step")
    wall_time, value = _number(body.get("wall_time")), _number(body.get("value"))
    if (not isinstance(run, str) or not isinstance(tag, str) or isinstance(step, bool)
            or not isinstance(step, int) or wall_time is None or value is None
            or not math.isfinite(wall_time)):
        return None
    return ScalarPoint(run=run, tag=tag, step=step, wall_time=wall_time, value=value)


# -- structured events ------------------------------------------------------------------
# Training progress (Keras callback in the bootstrap) travels the same way as scalars, with
# its own mark: one JSON object per line, ``{"kind": ..., ...}``. Kinds: ``train_begin``,
# ``epoch_begin``, ``progress`` (a batch ended), ``epoch_end``, ``train_end``.
EVENT_MARK = "\x1ecellship-event "
EVENT_KINDS = ("train_begin", "epoch_begin", "progress", "epoch_end", "train_end")


def encode_event(kind: str, **fields: Any) -> str:
    """One log line (without newline) carrying a progress event; fields must be JSON."""
    body = {"kind": kind, **fields}
    return EVENT_MARK + json.dumps(body, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    """numpy scalars and the like (``float()``-able); anything else as its text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def decode_event(text: str) -> dict[str, Any] | None:
    """The event carried by an event line, or None for any other (or a damaged) line."""
    text = text.lstrip("\r\n")
    if not text.startswith(EVENT_MARK):
        return None
    try:
        body = json.loads(text[len(EVENT_MARK):])
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or body.get("kind") not in EVENT_KINDS:
        return None
    return body
