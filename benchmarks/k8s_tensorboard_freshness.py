"""Goal: a scalar written in a running cluster job's pod shows in the local TensorBoard's
HTTP API within 10 s (median).

Boots the test cluster of the k8s tier (tests/cluster; needs root), imports the training
image, and runs one job whose chief appends a scalar event (``loss`` at step i, its
wall_time the moment of writing) to its logdir every ``--pause`` seconds. At home: the
job's logdir mirror (new event-file bytes every 2 s over exec, as ``cellship tensorboard
JOB`` and a followed cell run it) and a real TensorBoard over the job's local logdir
(``cellship.watch.tensorboard.open_tensorboard``, reload every 2 s), polled every 0.2 s on
/data/plugin/scalars/scalars. Lag of a step = first seen - its wall_time in the pod (one
machine, one clock). Prints one JSON line. Run: ``.venv/bin/python
benchmarks/k8s_tensorboard_freshness.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import bench_cluster, isolated_home, machine

PROGRAM = '''
import os, time
from cellship.inside.eventfile import frame_record
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
folder = os.path.join(os.environ["CELLSHIP_LOGDIR"], "train")
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "events.out.tfevents.%d.chief" % time.time()), "ab") as handle:
    handle.write(frame_record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()))
    handle.flush()
    time.sleep(15)  # TensorBoard starts meanwhile
    for step in range({steps}):
        value = Summary.Value(tag="loss", simple_value=float(step))
        event = Event(wall_time=time.time(), step=step, summary=Summary(value=[value]))
        handle.write(frame_record(event.SerializeToString()))
        handle.flush()
        time.sleep({pause})
'''


def points(url: str, run: str) -> list:
    query = f"{url}/data/plugin/scalars/scalars?run={urllib.parse.quote(run)}&tag=loss"
    try:
        with urllib.request.urlopen(query, timeout=5) as answer:
            return json.loads(answer.read())
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--pause", type=float, default=1.5)
    args = parser.parse_args()
    home = isolated_home()
    lags: list[float] = []
    with bench_cluster() as (cluster, image):
        import cellship
        from cellship.train.kubernetes.backend import KubernetesBackend
        from cellship.watch import tensorboard as tb

        job = cellship.submit(PROGRAM.format(steps=args.steps, pause=args.pause), workers=1,
                              name="fresh", backend="kubernetes", detached=True,
                              kubernetes={"image": image, "namespace": "bench",
                                          "image_pull_policy": "Never"})
        while job.status != "running":
            time.sleep(0.2)
        backend = KubernetesBackend()
        mirror = backend.mirror(job.record)
        server = tb.open_tensorboard([job.id])
        seen: dict[int, float] = {}
        written: dict[int, float] = {}
        deadline = time.monotonic() + 120 + args.steps * args.pause
        try:
            while len(seen) < args.steps and time.monotonic() < deadline:
                now = time.time()
                for wall, step, _value in points(server.url, f"{job.name}/train"):
                    if step not in seen:
                        seen[step], written[step] = now, wall
                time.sleep(0.2)
        finally:
            tb.stop(server)
            if mirror is not None:
                mirror.stop()
            backend.cancel(job.record, now=True)
        lags = [seen[s] - written[s] for s in sorted(seen)]
    result = {
        "goal": "scalar in the pod -> local TensorBoard HTTP API: median <= 10 s",
        "steps_seen": len(lags), "steps": args.steps,
        "median_s": round(statistics.median(lags), 2) if lags else None,
        "p90_s": round(sorted(lags)[int(0.9 * (len(lags) - 1))], 2) if lags else None,
        "max_s": round(max(lags), 2) if lags else None,
        "met": bool(lags) and statistics.median(lags) <= 10, "machine": machine()}
    print(json.dumps(result))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
