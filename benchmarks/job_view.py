"""Following a 2-worker Keras job with the widget job view, in a real JupyterLab and
headless Debian chromium: the kernel's CPU, the kernel-to-browser traffic, and how long
after a replica wrote a progress event (batch logs: the curves' points) the browser had it.

Goals (issue 13): <= 5% of one core in the kernel, <= 20 kB/s kernel-to-browser at about
10 scalars/s, update latency median <= 1 s, p95 <= 2 s.

The job: MultiWorkerMirrored on scikit-learn's digits, a sleeping callback slowing batches
to a few per second, four values per batch (loss and three metrics); the bootstrap's
callback sends each worker's progress at most 4 times a second, the chief's batch logs
become the curves' points (``scalars_per_s`` counts them as drawn in the browser).
Measured over the steady part (after both bars move, before the job ends).

    .venv/bin/python benchmarks/job_view.py [--seconds 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
import psutil  # noqa: E402
from benchmarks._common import machine  # noqa: E402

from tests.ui.lab import browser, missing_prerequisites, running_lab  # noqa: E402

CELL = """%%train --workers 2 --name bench-view
import time
import tensorflow as tf
from sklearn.datasets import load_digits
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy", tf.keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"),
                           tf.keras.metrics.SparseCategoricalCrossentropy(name="xent")])
slow = tf.keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, l: time.sleep(0.1))
model.fit(x[:1500], y[:1500], epochs={epochs}, batch_size=50, callbacks=[slow])
"""


# curve points drawn in the view (every batch_* curve)
DRAWN = ("() => [...document.querySelectorAll('svg.cellship-chart[data-tag^=\"batch_\"] path')]"
         ".reduce((n, p) => n + +p.dataset.points, 0)")


def kernel_process(url: str, token: str, notebook: str) -> psutil.Process:
    kernel = None
    for _ in range(60):
        with urllib.request.urlopen(f"{url}api/sessions?token={token}", timeout=10) as reply:
            kernel = next((s["kernel"]["id"] for s in json.load(reply)
                           if s["path"].endswith(notebook)), None)
        if kernel:
            break
        time.sleep(0.5)
    for proc in psutil.process_iter(["cmdline"]):
        if any(f"kernel-{kernel}.json" in part for part in proc.info["cmdline"] or ()):
            return proc
    raise RuntimeError(f"no process for kernel {kernel}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0, help="steady window to measure")
    args = parser.parse_args()
    reason = missing_prerequisites()
    if reason:
        sys.exit(reason)
    from tests.ui.test_panel import _open_notebook, _run_all

    epochs = int(args.seconds / 3) + 4  # 30 batches of ~0.1 s per epoch
    with tempfile.TemporaryDirectory() as tmp, running_lab(Path(tmp)) as lab, browser() as chromium:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("%load_ext cellship"),
                    nbformat.v4.new_code_cell(CELL.format(epochs=epochs))]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, lab.root / "bench.ipynb")
        page = chromium.new_context(viewport={"width": 1400, "height": 900}).new_page()
        received = {"bytes": 0}

        def on_socket(ws: object) -> None:
            if "/channels" in ws.url:
                ws.on("framereceived", lambda payload: received.__setitem__(
                    "bytes", received["bytes"] + len(payload)))

        page.on("websocket", on_socket)
        _open_notebook(page, lab, "bench.ipynb")
        kernel = kernel_process(lab.url, lab.token, "bench.ipynb")
        _run_all(page)
        page.wait_for_function(
            "() => document.querySelectorAll('progress.cellship-progress').length === 2 && "
            "[...document.querySelectorAll('progress.cellship-progress')].every(p => +p.value > 0)",
            timeout=120_000)
        page.evaluate("() => { window.__cellshipLatencies = []; }")
        drawn0 = page.evaluate(DRAWN)
        cpu0, bytes0, t0 = sum(kernel.cpu_times()[:2]), received["bytes"], time.monotonic()
        page.wait_for_timeout(args.seconds * 1000)  # (Playwright delivers frame events meanwhile)
        cpu1, bytes1, t1 = sum(kernel.cpu_times()[:2]), received["bytes"], time.monotonic()
        latencies = page.evaluate("() => window.__cellshipLatencies")
        drawn1 = page.evaluate(DRAWN)
        page.locator("button.cellship-cancel").click()
        page.wait_for_selector(".cellship-view[data-status='cancelled']", timeout=60_000)
    wall = t1 - t0
    latencies = sorted(latencies)
    result = {
        "kernel_cpu_percent": round(100 * (cpu1 - cpu0) / wall, 2),
        "kernel_to_browser_kB_per_s": round((bytes1 - bytes0) / wall / 1000, 2),
        "latency_median_s": round(statistics.median(latencies) / 1000, 3),
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))] / 1000, 3),
        "scalars_per_s": round((drawn1 - drawn0) / wall, 1),
        "progress_updates": len(latencies), "window_s": round(wall, 1),
        "machine": machine(),
    }
    result["meets_goal"] = (result["kernel_cpu_percent"] <= 5 and
                            result["kernel_to_browser_kB_per_s"] <= 20 and
                            result["latency_median_s"] <= 1 and result["latency_p95_s"] <= 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
