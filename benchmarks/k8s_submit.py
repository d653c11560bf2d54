"""Goal: from `%%train --workers 2 --backend kubernetes` to both pods Running, cellship adds
at most 1 s over `kubectl apply` of the same objects.

Boots the test cluster of the k8s tier (tests/cluster: Kubernetes built from Debian's
source, cached; needs root), imports the training image, then alternates the two
launches of one 2-worker job whose program sleeps:

* cellship: ``cellship.submit(..., backend="kubernetes")`` (program analysis, store
  record, ConfigMap + headless Service + 2 Pods through the Python client);
* kubectl: ``kubectl apply -f`` of the very objects cellship creates (made by the same
  manifest functions; ownerReferences dropped, since kubectl cannot know the uid), then
  the same poll until both pods are Running.

Prints one JSON line. Run from the repository root: ``.venv/bin/python benchmarks/k8s_submit.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import bench_cluster, isolated_home, machine

PROGRAM = "import time\nprint('up', flush=True)\ntime.sleep(300)\n"


def pods_running(kubectl, namespace: str, selector: str, count: int) -> bool:
    out = kubectl("get", "pods", "-n", namespace, "-l", selector, "-o",
                  "jsonpath={.items[*].status.phase}", check=False).stdout.split()
    return len(out) == count and all(p == "Running" for p in out)


def wait_running(kubectl, namespace: str, selector: str, count: int = 2,
                 timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pods_running(kubectl, namespace, selector, count):
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"pods {selector} not running after {timeout}s")


def cellship_launch(cluster, namespace: str, image: str) -> float:
    import cellship

    start = time.perf_counter()
    job = cellship.submit(PROGRAM, workers=2, backend="kubernetes",
                          kubernetes={"image": image, "namespace": namespace,
                                      "image_pull_policy": "Never"})
    end = wait_running(cluster.kubectl, namespace, f"cellship.io/job-id={job.id}")
    job.cancel()
    job.delete()
    return end - start


def kubectl_launch(cluster, namespace: str, image: str) -> float:
    from cellship.kube.options import KubernetesOptions
    from cellship.train.kubernetes.dryrun import build_objects
    from cellship.train.kubernetes.manifests import JobIdentity
    from cellship.train.spec import JobSpec

    job_id = uuid.uuid4().hex[:8]
    identity = JobIdentity(job_id, "plain", namespace)
    objects = build_objects(identity, JobSpec(workers=2), PROGRAM,
                            KubernetesOptions(image=image, namespace=namespace,
                                              image_pull_policy="Never"), None)
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)
        obj["metadata"].pop("uid", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, handle)
    start = time.perf_counter()
    cluster.kubectl("apply", "-f", handle.name)
    end = wait_running(cluster.kubectl, namespace, f"cellship.io/job-id={job_id}")
    cluster.kubectl("delete", "-f", handle.name, "--wait=true", "--grace-period=0",
                    "--force", check=False)
    Path(handle.name).unlink()
    return end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"cellship": [], "kubectl": []}
    home = isolated_home()
    with bench_cluster() as (cluster, image):
        kubectl_launch(cluster, "bench", image)  # warm: the image's first start is slower
        for _ in range(args.runs):
            results["kubectl"].append(kubectl_launch(cluster, "bench", image))
            results["cellship"].append(cellship_launch(cluster, "bench", image))
    pairs = [c - k for c, k in zip(results["cellship"], results["kubectl"])]
    overhead = statistics.median(pairs)
    print(json.dumps({
        "goal": "cell start to both pods Running: cellship overhead over kubectl apply <= 1 s",
        "cellship_median_s": round(statistics.median(results["cellship"]), 3),
        "kubectl_median_s": round(statistics.median(results["kubectl"]), 3),
        "overhead_median_of_pairs_s": round(overhead, 3),
        "runs": args.runs, "raw": {k: [round(v, 3) for v in vs] for k, vs in results.items()},
        "met": overhead <= 1.0, "machine": machine()}))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
