"""Live scalar metrics of a job: the buffer the notebook's live plot and the ``metrics``
endpoints read from. The points arrive through the log-stream relay
(:mod:`cellship.inside.relay`, re-exported here for the readers).

numpy is imported lazily: the supervisor and the CLI import this module and should not pay
for numpy (or pandas) to do so.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd
    from numpy.typing import ArrayLike


from cellship.inside.relay import RELAY_MARK, ScalarPoint, decode_relay, encode_relay, is_relay

__all__ = ["RELAY_MARK", "ScalarPoint", "decode_relay", "encode_relay", "is_relay", "MetricsBuffer",
           "downsample"]


# -- buffer -----------------------------------------------------------------------------
class _Series:
    """Growable columns of one (run, tag): amortised O(1) appends, 24 bytes a point."""

    __slots__ = ("steps", "wall_times", "values", "size", "last")

    def __init__(self) -> None:
        import numpy as np

        self.steps = np.empty(64, dtype=np.int64)
        self.wall_times = np.empty(64, dtype=np.float64)
        self.values = np.empty(64, dtype=np.float64)
        self.size = 0
        self.last: tuple[int, float, float] | None = None  # (step, wall_time, value)

    def extend(self, steps: np.ndarray, wall_times: np.ndarray, values: np.ndarray) -> None:
        import numpy as np

        count = len(steps)
        if count == 0:
            return
        need = self.size + count
        if need > len(self.steps):
            capacity = max(need, 2 * len(self.steps))
            for name in ("steps", "wall_times", "values"):
                old = getattr(self, name)
                new = np.empty(capacity, dtype=old.dtype)
                new[:self.size] = old[:self.size]
                setattr(self, name, new)
        self.steps[self.size:need] = steps
        self.wall_times[self.size:need] = wall_times
        self.values[self.size:need] = values
        self.size = need
        # the latest point of this batch: highest step, then latest wall time, then last
        top = np.flatnonzero(steps == steps.max())
        latest = top[len(top) - 1 - int(np.argmax(wall_times[top][::-1]))]
        candidate = (int(steps[latest]), float(wall_times[latest]), float(values[latest]))
        if self.last is None or candidate[:2] >= self.last[:2]:
            self.last = candidate


class MetricsBuffer:
    """Every scalar point of a job, grouped by (run, tag), safe to fill from one thread
    while another reads. ``version`` changes whenever points are added, so a display can
    skip redrawing when nothing is new."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()
        self._count = 0
        self.version = 0

    def add(self, points: Iterable[ScalarPoint]) -> int:
        """Add points (in arrival order); returns how many were added."""
        import numpy as np

        groups: dict[tuple[str, str], list[ScalarPoint]] = {}
        for point in points:
            groups.setdefault((point.run, point.tag), []).append(point)
        added = 0
        for (run, tag), group in groups.items():
            added += self.extend(run, tag,
                                 np.fromiter((p.step for p in group), np.int64, len(group)),
                                 np.fromiter((p.value for p in group), np.float64, len(group)),
                                 np.fromiter((p.wall_time for p in group), np.float64, len(group)))
        return added

    def extend(self, run: str, tag: str, steps: ArrayLike, values: ArrayLike,
               wall_times: ArrayLike | None = None) -> int:
        """Add one curve's points in bulk (history loaded at once, benchmarks); wall times
        default to now. Returns how many were added."""
        import numpy as np

        steps = np.asarray(steps, dtype=np.int64).ravel()
        values = np.asarray(values, dtype=np.float64).ravel()
        if wall_times is None:
            wall_times = np.full(len(steps), time.time())
        wall_times = np.asarray(wall_times, dtype=np.float64).ravel()
        if not len(steps) == len(values) == len(wall_times):
            raise ValueError(f"extend({run!r}, {tag!r}): steps, values and wall_times differ "
                             f"in length ({len(steps)}, {len(values)}, {len(wall_times)})")
        if len(steps) == 0:
            return 0
        with self._lock:
            series = self._series.get((run, tag))
            if series is None:
                series = self._series[(run, tag)] = _Series()
            series.extend(steps, wall_times, values)
            self._count += len(steps)
            self.version += 1
        return len(steps)

    def __len__(self) -> int:
        return self._count

    def tags(self) -> list[str]:
        with self._lock:
            return sorted({tag for _, tag in self._series})

    def runs(self, tag: str | None = None) -> list[str]:
        """Runs that have ``tag`` (every run when ``tag`` is None)."""
        with self._lock:
            return sorted({run for run, t in self._series if tag is None or t == tag})

    def series(self, run: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one curve, ordered by step (arrival order among equal steps,
        e.g. after a restart resumed from a backup). Copies: safe to keep."""
        import numpy as np

        with self._lock:
            series = self._series.get((run, tag))
            if series is None:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
            steps = series.steps[:series.size].copy()
            values = series.values[:series.size].copy()
        if steps.size > 1 and not bool(np.all(steps[1:] >= steps[:-1])):
            order = np.argsort(steps, kind="stable")
            steps, values = steps[order], values[order]
        return steps, values

    def to_dataframe(self) -> pd.DataFrame:
        """One row per point: columns step, wall_time, run, tag, value."""
        import numpy as np
        import pandas as pd

        columns = ["step", "wall_time", "run", "tag", "value"]
        with self._lock:
            parts = [(run, tag, s.steps[:s.size].copy(), s.wall_times[:s.size].copy(),
                      s.values[:s.size].copy())
                     for (run, tag), s in sorted(self._series.items())]
        if not parts:
            return pd.DataFrame({"step": np.empty(0, dtype=np.int64),
                                 "wall_time": np.empty(0, dtype=np.float64),
                                 "run": pd.Series([], dtype=object),
                                 "tag": pd.Series([], dtype=object),
                                 "value": np.empty(0, dtype=np.float64)}, columns=columns)
        sizes = [len(p[2]) for p in parts]
        return pd.DataFrame({
            "step": np.concatenate([p[2] for p in parts]),
            "wall_time": np.concatenate([p[3] for p in parts]),
            "run": np.repeat(np.array([p[0] for p in parts], dtype=object), sizes),
            "tag": np.repeat(np.array([p[1] for p in parts], dtype=object), sizes),
            "value": np.concatenate([p[4] for p in parts]),
        }, columns=columns)

    def last_values(self) -> dict[str, dict[str, Any]]:
        """``"run/tag" -> {"step", "value", "wall_time"}`` of each curve's latest point
        (highest step; among equal steps the latest wall time)."""
        with self._lock:
            return {f"{run}/{tag}": {"step": s.last[0], "value": s.last[2], "wall_time": s.last[1]}
                    for (run, tag), s in sorted(self._series.items()) if s.last is not None}


def downsample(steps: np.ndarray, values: np.ndarray,
               max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve for display: min-max decimation.

    The first and last points are kept, and each bucket of consecutive points in between
    keeps its lowest and highest value in their original order, so a loss spike (or a NaN,
    which shows as a gap) survives however long the run. Inputs already small enough are
    returned unchanged.
    """
    import numpy as np

    steps = np.asarray(steps)
    values = np.asarray(values)
    n = len(values)
    if n <= max_points or n <= 2:
        return steps, values
    if max_points < 4:
        keep = np.array([0, n - 1])
        return steps[keep], values[keep]
    middle = values[1:-1]
    m = len(middle)
    buckets = (max_points - 2) // 2
    width = -(-m // buckets)  # ceil: at most `buckets` buckets, the last one maybe short
    full = m // width
    body = middle[:full * width].reshape(full, width)
    lows = body.argmin(axis=1) + np.arange(full) * width
    highs = body.argmax(axis=1) + np.arange(full) * width
    if full * width < m:
        rest = middle[full * width:]
        lows = np.append(lows, full * width + int(rest.argmin()))
        highs = np.append(highs, full * width + int(rest.argmax()))
    pairs = np.sort(np.stack([lows, highs], axis=1), axis=1).ravel() + 1
    keep = np.concatenate(([0], pairs, [n - 1]))
    keep = keep[np.concatenate(([True], keep[1:] != keep[:-1]))]  # constant buckets: once
    return steps[keep], values[keep]
