"""Goal: copying a cluster job's 500 MB output dir home is no slower than `kubectl cp` of
the same dir in the same run.

Boots the test cluster of the k8s tier (tests/cluster; needs root), imports the training
image, runs one job whose chief writes ``--mb`` MB (random bytes, in 5 files) into its
output dir and ends; its pod stays up (the keeper container) for the copies. Then,
alternating, ``--runs`` times each:

* cellship: ``KubernetesBackend.fetch`` (exec into the keeper, the in-pod sender, SHA-256
  checked, staged and renamed) into an emptied local job dir;
* kubectl: ``kubectl cp NS/POD:/cellship/job/output DIR -c keeper`` (tar over exec).

Both go through the same API server and kubelet. Prints one JSON line. Run from the
repository root: ``.venv/bin/python benchmarks/k8s_fetch.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import bench_cluster, isolated_home, machine

PROGRAM = '''
import os
import cellship
for i in range(5):
    with open(cellship.job.output_dir() / f"part-{{i}}.bin", "wb") as handle:
        for _ in range({mb} // 5):
            handle.write(os.urandom(1 << 20))
print("written", flush=True)
'''


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--streams", default="2",
                        help="comma-separated numbers of parallel send streams to try")
    args = parser.parse_args()
    variants = [int(n) for n in args.streams.split(",")]
    home = isolated_home()
    results: dict[str, list[float]] = {"kubectl": []}
    size = 0
    with bench_cluster() as (cluster, image):
        import cellship
        from cellship.fetch import pull
        from cellship.train.kubernetes.backend import KubernetesBackend

        job = cellship.submit(PROGRAM.format(mb=args.mb), workers=1, name="blob",
                              backend="kubernetes", detached=True,
                              kubernetes={"image": image, "namespace": "bench",
                                          "image_pull_policy": "Never",
                                          "fetch_linger": 3600})
        deadline = time.monotonic() + 600
        while job.status != "succeeded":
            if time.monotonic() > deadline or job.record.done:
                raise RuntimeError(f"the job did not succeed: {job.record.error}")
            time.sleep(0.5)
        pod = f"blob-{job.id}-worker-0"
        backend = KubernetesBackend()
        job_dir = Path(job.record.job_dir)
        for _ in range(args.runs):
            for streams in variants:
                pull.STREAMS = streams
                for folder in (job.output_dir, job_dir / ".fetch"):
                    shutil.rmtree(folder, ignore_errors=True)
                job.output_dir.mkdir()
                (job_dir / "fetch.json").unlink(missing_ok=True)
                start = time.perf_counter()
                backend.fetch(job.record, stream=io.StringIO(), release=False)
                results.setdefault(f"cellship_{streams}", []).append(time.perf_counter() - start)
                size = tree_bytes(job.output_dir)
            target = Path(tempfile.mkdtemp(prefix="kubectl-cp-"))
            start = time.perf_counter()
            cluster.kubectl("cp", f"bench/{pod}:/cellship/job/output", str(target / "output"),
                            "-c", "keeper")
            results["kubectl"].append(time.perf_counter() - start)
            copied = tree_bytes(target / "output")
            shutil.rmtree(target)
            if copied != size:
                raise RuntimeError(f"kubectl cp copied {copied} bytes, cellship {size}")
        backend.cancel(job.record, now=True)
    kubectl_s = statistics.median(results["kubectl"])
    medians = {k: statistics.median(v) for k, v in results.items() if k != "kubectl"}
    best = min(medians, key=lambda k: medians[k])
    print(json.dumps({
        "goal": "copy home of a 500 MB output dir no slower than kubectl cp",
        "bytes": size, "kubectl_cp_median_s": round(kubectl_s, 2),
        "kubectl_cp_MB_per_s": round(size / kubectl_s / 1e6, 1),
        "cellship_median_s": {k: round(v, 2) for k, v in medians.items()},
        "cellship_MB_per_s": {k: round(size / v / 1e6, 1) for k, v in medians.items()},
        "runs": args.runs, "raw": {k: [round(v, 2) for v in vs] for k, vs in results.items()},
        "met": medians[best] <= kubectl_s, "machine": machine()}))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
