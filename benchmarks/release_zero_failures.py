"""Goal of ``cellship release --to kubernetes`` (issue 14): zero failed requests at 50 req/s
through the model's Service while a new version is promoted and while it is rolled back.

Boots the k8s tier's test cluster (tests/cluster, needs root; kube-proxy in iptables mode,
so the Service's ClusterIP routes from here), starts a plain-http docker-registry on
127.0.0.1 that the node pulls from, pushes the pods' image (tests/cluster/image.py) into it
with skopeo as the base of the serving images, then:

1. releases v1 of a digits model (``cellship.release(..., to="kubernetes")``, 2 replicas);
2. starts the load: predict requests at a fixed 50 req/s (one every 20 ms, sent from a pool
   of threads so a slow answer does not delay the next) to the Service's ClusterIP;
3. releases v2 (a canary pod beside v1's two, smoke test, window, promotion: v2 scaled to
   2, v1 scaled to 0 and deleted);
4. ``cellship.rollback`` to v1 (v1's recorded image redeployed and promoted the same way);
5. stops the load. A request fails when it gets no 200 with predictions within 10 s.

Prints one JSON line (per phase: requests sent, failed, achieved rate, p99 latency).

    .venv/bin/python benchmarks/release_zero_failures.py [--window 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import bench_cluster, isolated_home, machine

RATE = 50.0


class Load:
    """Requests at a fixed rate; each outcome is kept with the phase it was sent in."""

    def __init__(self, url: str, body: dict[str, Any], rate: float = RATE) -> None:
        self.url, self.body, self.interval = url, json.dumps(body).encode(), 1.0 / rate
        self.phase = "warm"
        self.results: list[tuple[str, bool, float, str]] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16)
        self._thread = threading.Thread(target=self._pace, daemon=True)
        self._lock = threading.Lock()

    def _one(self, phase: str) -> None:
        start = time.perf_counter()
        error = ""
        try:
            request = urllib.request.Request(self.url, data=self.body, method="POST")
            with urllib.request.urlopen(request, timeout=10) as response:
                ok = response.status == 200 and "predictions" in json.loads(response.read())
        except (OSError, ValueError) as err:
            ok, error = False, repr(err)
        with self._lock:
            self.results.append((phase, ok, time.perf_counter() - start, error))

    def _pace(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            self._pool.submit(self._one, self.phase)
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def summary(self, phase: str, seconds: float) -> dict[str, Any]:
        rows = [r for r in self.results if r[0] == phase]
        latencies = sorted(r[2] for r in rows)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
        return {"requests": len(rows), "failed": sum(not r[1] for r in rows),
                "rate": round(len(rows) / seconds, 1) if seconds else None,
                "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
                "seconds": round(seconds, 1),
                "errors": sorted({r[3] for r in rows if not r[1]})[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=5.0, help="the canary window (s)")
    args = parser.parse_args()
    isolated_home()
    import cellship.release
    from cellship.release.pipeline import rollback
    from tests.cluster.image import training_image_archive
    from tests.integration import images_support
    from tests.integration.test_batch import make_notebook
    from tests.integration.test_release_local import BODY, PARAMETERS, _train

    tmp = Path(tempfile.mkdtemp(prefix="cellship-bench-release-"))
    good, _wrong, accuracy, example = _train(tmp)
    notebook = make_notebook(tmp / "release.ipynb", BODY, parameters=PARAMETERS)
    registry = images_support.start_registry(tmp / "registry")
    try:
        with bench_cluster("bench") as (cluster, _image):
            cluster.pull_from(registry.host)
            archive, ref = training_image_archive()
            base = f"{registry.host}/cellship-test/train:{ref.rsplit(':', 1)[1]}"
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                            f"oci-archive:{archive}", f"docker://{base}"], check=True,
                           capture_output=True, timeout=600)
            options = {"to": "kubernetes", "registry": f"{registry.host}/releases",
                       "base": base, "deps_from_base": True, "namespace": "bench",
                       "context": cluster.context, "replicas": 2, "canary": 50.0,
                       "gates": ["record:accuracy >= 0.5"], "example": example,
                       "limits": cellship.release.pipeline.CanaryLimits(window_s=args.window)}

            def release(out: str) -> float:
                start = time.perf_counter()
                cellship.release(str(notebook), model="digits", parameters={
                    "source": str(good), "out": out, "accuracy": accuracy}, **options)
                return time.perf_counter() - start

            first = release("m1")
            from cellship.kube.client import connect

            service = connect(cluster.context).get("Service", "bench", "digits")
            url = f"http://{service['spec']['clusterIP']}:8501/v1/models/digits:predict"
            with Load(url, example) as load:
                time.sleep(5)
                load.phase = "promotion"
                promote_s = release("m2")
                load.phase = "rollback"
                start = time.perf_counter()
                rollback("digits", namespace="bench", context=cluster.context)
                rollback_s = time.perf_counter() - start
                load.phase = "after"
                time.sleep(5)
            result = {
                "benchmark": "release_zero_failures", "machine": machine(),
                "date": time.strftime("%Y-%m-%d", time.gmtime()), "rate_goal": RATE,
                "first_release_s": round(first, 1),
                "warm": load.summary("warm", 5.0),
                "promotion": load.summary("promotion", promote_s),
                "rollback": load.summary("rollback", rollback_s),
                "after": load.summary("after", 5.0)}
            result["failed_total"] = sum(result[p]["failed"] for p in
                                         ("warm", "promotion", "rollback", "after"))
            result["goal_met"] = result["failed_total"] == 0
            print(json.dumps(result))
    finally:
        registry.stop()


if __name__ == "__main__":
    main()
