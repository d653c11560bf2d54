"""Goals of live metrics: a scalar the job writes is available to the notebook's inline
display within 0.5 s (median) and 1 s (p95); following a running job costs at most 5% of
one core.

A one-replica job writes a scalar every 0.1 s (flushing its writer, as
cellship.job.tensorboard() does after each epoch) for ~20 s. This process follows it the
way the %%train magic does: log lines, relayed scalars into a MetricsBuffer, and the chart
redrawn at most every 2 s (as the magic does). Freshness = arrival here - the event's wall_time. Cost =
this process's CPU time while following / wall time.

    .venv/bin/python benchmarks/metrics_freshness.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import isolated_home, machine

PROGRAM = '''
import time
import tensorflow as tf
import cellship

writer = tf.summary.create_file_writer(str(cellship.job.logdir() / "train"))
print("writing", flush=True)
with writer.as_default():
    for step in range({steps}):
        tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
        writer.flush()
        print(f"step {{step}}", flush=True)
        time.sleep({interval})
'''


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-chart", action="store_true", help="follow without redrawing the chart")
    args = parser.parse_args()
    home = isolated_home()
    import cellship
    from cellship.watch.charts import render_png
    from cellship.watch.metrics import MetricsBuffer

    script = Path(tempfile.mkdtemp(prefix="cellship-bench-")) / "scalars.py"
    script.write_text(PROGRAM.format(steps=200, interval=0.1))
    latencies: list[float] = []
    buffer = MetricsBuffer()
    state = {"drawn": -1, "last": 0.0, "draws": 0}

    def redraw(force: bool = False) -> None:
        if args.no_chart:
            return
        if buffer.version != state["drawn"] and (force or time.monotonic() - state["last"] >= 2.0):
            render_png(buffer)
            state.update(drawn=buffer.version, last=time.monotonic(), draws=state["draws"] + 1)

    def on_metric(point) -> None:
        latencies.append(time.time() - point.wall_time)
        buffer.add([point])
        redraw()

    try:
        job = cellship.submit_script(script)
        # Measure only the steady state: from the first line the job prints to its end.
        lines = iter(job.logs(follow=True))
        next(line for line in lines if "writing" in line.text)
        cpu0, wall0 = time.process_time(), time.monotonic()
        record = job.follow(lambda line: None, on_metric=on_metric, on_idle=redraw)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        redraw(force=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(script.parent, ignore_errors=True)
    result = {"benchmark": "metrics_freshness", "machine": machine(), "job_status": record.status,
              "points": len(latencies),
              "freshness_median_s": round(statistics.median(latencies), 3),
              "freshness_p95_s": round(percentile(latencies, 0.95), 3),
              "follow_cpu_percent_of_one_core": round(100 * cpu / wall, 2),
              "chart_redraws": state["draws"], "followed_s": round(wall, 1),
              "chart": not args.no_chart,
              "goals": {"freshness_median_s": 0.5, "freshness_p95_s": 1.0, "follow_cpu_percent": 5}}
    result["meets_goal"] = (result["freshness_median_s"] <= 0.5 and result["freshness_p95_s"] <= 1.0
                            and result["follow_cpu_percent_of_one_core"] <= 5)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
