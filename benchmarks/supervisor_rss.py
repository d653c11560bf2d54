"""Goal: the local backend's supervisor process stays under 80 MB RSS (it must not import
TensorFlow) while it runs a 2-worker TensorFlow job.

    .venv/bin/python benchmarks/supervisor_rss.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TRAIN_PROGRAM, isolated_home, machine


def rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    home = isolated_home()
    import cellship

    script = Path(tempfile.mkdtemp(prefix="cellship-bench-")) / "train.py"
    script.write_text(TRAIN_PROGRAM)
    try:
        job = cellship.submit_script(script, workers=2)
        samples: list[float] = []
        tf_loaded = False
        while not job.record.done:
            pid = job.record.supervisor_pid
            value = rss_mb(pid) if pid else None
            if value is not None:
                samples.append(value)
                maps = Path(f"/proc/{pid}/maps")
                try:
                    tf_loaded = tf_loaded or "tensorflow" in maps.read_text()
                except OSError:
                    pass
            time.sleep(0.05)
        status = job.record.status
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(script.parent, ignore_errors=True)
    result = {"benchmark": "supervisor_rss", "machine": machine(), "job_status": status,
              "samples": len(samples), "max_rss_mb": round(max(samples), 1),
              "supervisor_loaded_tensorflow": tf_loaded, "goal_mb": 80}
    result["meets_goal"] = result["max_rss_mb"] < 80 and not tf_loaded
    print(json.dumps(result))


if __name__ == "__main__":
    main()
