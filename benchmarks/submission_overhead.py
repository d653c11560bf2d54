"""Goal: `%%train --workers 2` reaches the first training step at most 1.0 s (median) later
than the same program started by hand as two processes with TF_CONFIG.

Measured from "cell start" (just before the magic runs, in an in-process IPython shell) or
from just before the hand launch's first Popen, to the FIRST_STEP timestamp the program
prints on worker 0. Runs alternate between the two launches so drift hits both equally.

    .venv/bin/python benchmarks/submission_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TRAIN_PROGRAM, isolated_home, machine, median


def _first_step(text: str) -> float:
    match = re.search(r"FIRST_STEP ([\d.]+)", text)
    if not match:
        raise RuntimeError(f"no FIRST_STEP in output:\n{text[-2000:]}")
    return float(match.group(1))


def hand_launch(workdir: Path) -> float:
    """Two processes with TF_CONFIG, the way the TensorFlow tutorials do it."""
    program = workdir / "train.py"
    program.write_text(TRAIN_PROGRAM)
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    start = time.time()
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="1",
                   CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen([sys.executable, "-u", str(program)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("hand launch failed:\n" + outputs[0][-2000:])
    return _first_step(outputs[0]) - start


def magic_launch(shell) -> float:
    start = time.time()
    shell.run_cell("%%train --workers 2\n" + TRAIN_PROGRAM, store_history=True)
    import cellship

    job = cellship.last_job()
    if job is None or job.status != "succeeded":
        raise RuntimeError(f"%%train job did not succeed: {job}")
    log = Path(job.record.replicas[0].log_path).read_text()
    return _first_step(log) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    home = isolated_home()
    workdir = Path(tempfile.mkdtemp(prefix="cellship-bench-hand-"))
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "cellship")
    hand, magic = [], []
    try:
        hand_launch(workdir)  # warm the page cache for both variants alike
        for run in range(args.runs):
            hand.append(hand_launch(workdir))
            magic.append(magic_launch(shell))
            print(f"run {run + 1}: hand {hand[-1]:.2f} s, %%train {magic[-1]:.2f} s", file=sys.stderr)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"benchmark": "submission_overhead", "machine": machine(), "runs": args.runs,
              "hand_median_s": round(median(hand), 3), "train_median_s": round(median(magic), 3),
              "overhead_median_s": round(median(magic) - median(hand), 3),
              "paired_overhead_median_s": round(median([m - h for m, h in zip(magic, hand)]), 3),
              "goal_s": 1.0}
    result["meets_goal"] = result["overhead_median_s"] <= 1.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
