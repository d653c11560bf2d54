"""Goal: a live-plot update (``render_png`` of the whole buffer) with 100k points per tag
takes at most 100 ms (median).

    .venv/bin/python benchmarks/plot_update.py [--repeats 10]

The buffer holds 3 tags x 2 runs x 100k points, the shape of a long job logging every
batch. Before each timed update one new point arrives on every curve (as in a live job),
and the update decimates every curve and draws the PNG a notebook shows. The first render
of a buffer (which also builds the figure) is reported separately as ``first_ms``.

Two parts of that path are also timed alone (they were unit-test thresholds once):
``ingest_ms``, 100k scalars arriving 1,000 per poll as the relay delivers them (goal
<= 1 s), and ``downsample_ms``, one 100k-point curve min-max decimated to 2,000 points
(median of 10; goal <= 10 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

POINTS = 100_000
GOAL_MS = 100
INGEST_GOAL_MS = 1000
DOWNSAMPLE_GOAL_MS = 10


def build_buffer():  # type: ignore[no-untyped-def]
    import numpy as np

    from cellship.watch.metrics import MetricsBuffer

    rng = np.random.default_rng(0)
    buffer = MetricsBuffer()
    steps = np.arange(POINTS)
    for tag in ("epoch_loss", "epoch_accuracy", "learning_rate"):
        for offset, run in enumerate(("train", "validation")):
            values = np.exp(-steps / 30_000) + 0.05 * rng.normal(size=POINTS) + 0.1 * offset
            buffer.extend(run, tag, steps, values, 1.7e9 + steps * 0.01)
    return buffer


def time_parts() -> dict[str, float]:
    """The buffer's ingest of polled points and the decimation of one curve, alone."""
    import numpy as np

    from cellship.watch.metrics import MetricsBuffer, ScalarPoint, downsample

    points = [ScalarPoint("train", "epoch_loss", i, 1.7e9 + i, 1.0 / (i + 1)) for i in range(POINTS)]
    buffer = MetricsBuffer()
    start = time.perf_counter()
    for chunk in range(0, POINTS, 1000):
        buffer.add(points[chunk:chunk + 1000])
    ingest_ms = (time.perf_counter() - start) * 1000
    steps = np.arange(POINTS)
    values = np.random.default_rng(1).normal(size=POINTS)
    downsample(steps, values, 2000)
    runs = []
    for _ in range(10):
        start = time.perf_counter()
        downsample(steps, values, 2000)
        runs.append((time.perf_counter() - start) * 1000)
    return {"ingest_ms": round(ingest_ms, 1), "downsample_ms": round(statistics.median(runs), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from cellship.watch.charts import render_png

    render_png(build_buffer())  # warm-up: imports and matplotlib's font cache
    buffer = build_buffer()
    start = time.perf_counter()
    render_png(buffer)
    first_ms = (time.perf_counter() - start) * 1000
    times_ms: list[float] = []
    size = 0
    for i in range(args.repeats):
        step = POINTS + i
        for tag in buffer.tags():
            for run in buffer.runs(tag):
                buffer.extend(run, tag, [step], [0.5], [1.7e9 + step * 0.01])
        start = time.perf_counter()
        size = len(render_png(buffer))
        times_ms.append((time.perf_counter() - start) * 1000)
    times_ms.sort()
    p95 = times_ms[min(len(times_ms) - 1, round(0.95 * (len(times_ms) - 1)))]
    result = {"benchmark": "plot_update", "machine": machine(), "points_per_tag": POINTS,
              "tags": 3, "runs": 2, "repeats": args.repeats, "png_bytes": size,
              "median_ms": round(statistics.median(times_ms), 1), "p95_ms": round(p95, 1),
              "first_ms": round(first_ms, 1), "goal_ms": GOAL_MS}
    result["meets_goal"] = result["median_ms"] <= GOAL_MS
    parts = time_parts()
    result.update(parts, ingest_goal_ms=INGEST_GOAL_MS, downsample_goal_ms=DOWNSAMPLE_GOAL_MS,
                  parts_meet_goals=parts["ingest_ms"] <= INGEST_GOAL_MS
                  and parts["downsample_ms"] <= DOWNSAMPLE_GOAL_MS)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
