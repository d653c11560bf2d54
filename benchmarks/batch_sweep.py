"""Goals of batch runs:
  - overhead per run compared with the plain `papermill` command on the same notebook:
    at most 10%;
  - a sweep of 8 runs of a light (non-TensorFlow) notebook with --parallel 2 on 2 cores:
    at least 1.7x faster than --parallel 1.

The light notebook sleeps 1.5 s (a stand-in for waiting on I/O or a remote service) and
computes a little. Everything goes through the real CLIs (`papermill`, `cellship batch`).

    .venv/bin/python benchmarks/batch_sweep.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import isolated_home, machine

BIN = Path(sys.executable).parent


def light_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("i = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import time\ntime.sleep(1.5)\ntotal = sum(k * k for k in range(200_000))\nprint(i, total)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = isolated_home()
    work = Path(tempfile.mkdtemp(prefix="cellship-bench-batch-"))
    notebook = light_notebook(work / "light.ipynb")
    papermill = [str(BIN / "papermill"), str(notebook), str(work / "out.ipynb"), "-p", "i", "1",
                 "--no-progress-bar"]
    one_run = [str(BIN / "cellship"), "batch", str(notebook), "-p", "i", "1"]
    sweep = [str(BIN / "cellship"), "batch", str(notebook), "--grid", "i=" + ",".join(map(str, range(8)))]
    try:
        timed(papermill)  # warm caches
        plain, ours = [], []
        for _ in range(args.repeats * 2):
            plain.append(timed(papermill))
            ours.append(timed(one_run))
        serial = [timed(sweep + ["--parallel", "1"]) for _ in range(args.repeats)]
        parallel = [timed(sweep + ["--parallel", "2"]) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    p, o = statistics.median(plain), statistics.median(ours)
    s1, s2 = statistics.median(serial), statistics.median(parallel)
    result = {"benchmark": "batch_sweep", "machine": machine(),
              "papermill_run_s": round(p, 3), "cellship_batch_run_s": round(o, 3),
              "overhead_percent": round(100 * (o - p) / p, 1),
              "sweep8_parallel1_s": round(s1, 2), "sweep8_parallel2_s": round(s2, 2),
              "speedup": round(s1 / s2, 2),
              "goals": {"overhead_percent": 10, "speedup": 1.7}}
    result["meets_goal"] = result["overhead_percent"] <= 10 and result["speedup"] >= 1.7
    print(json.dumps(result))


if __name__ == "__main__":
    main()
