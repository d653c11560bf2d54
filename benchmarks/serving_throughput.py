"""Goals: at 64 concurrent clients, `cellship serve` answers >= 5x the requests per second of
a naive per-request Flask server, and >= 70% of the model's in-process ceiling (the same
SavedModel called directly on full batches of 64, no HTTP, no JSON).

    .venv/bin/pip install flask   # or: pip install -e .[bench]
    .venv/bin/python benchmarks/serving_throughput.py [--duration 6]

Two models, both on the 8x8 digits input with one instance per request (TF Serving's row
format, the body a client sends):
- digits-cnn: notebook 01's CNN (~0.2 MFLOP/row). Its ceiling (~90k rows/s at batch 64 on
  two cores) is far above what any HTTP + JSON stack answers per second, so it measures
  the per-request cost of the server, not batching.
- digits-mlp: three dense layers of 2048 (~17 MFLOP and 36 MB of weights per row; a call
  costs ~3 ms alone, ~23 ms for 64 rows): the model dominates, so it measures how much of
  the model's batched throughput the server delivers.
Load comes from this process over loopback (asyncio + uvloop, keep-alive connections),
1, 16 and 64 clients, each level bounded by --duration seconds and --max-requests. On a
two-core machine the load generator shares the cores with the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import isolated_home, machine

CONCURRENCY = (1, 16, 64)
GOAL_SPEEDUP = 5.0
GOAL_CEILING = 0.70


# -- models -------------------------------------------------------------------------------------
def build_models(root: Path) -> dict[str, Path]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    cnn = tf_keras.Sequential([
        tf_keras.Input(shape=(8, 8, 1), name="image"),
        tf_keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        tf_keras.layers.MaxPooling2D(),
        tf_keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(64, activation="relu"),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])
    mlp = tf_keras.Sequential([tf_keras.Input(shape=(8, 8, 1), name="image"),
                               tf_keras.layers.Flatten()]
                              + [tf_keras.layers.Dense(2048, activation="relu") for _ in range(3)]
                              + [tf_keras.layers.Dense(10, activation="softmax")])
    paths = {}
    for name, model in (("digits-cnn", cnn), ("digits-mlp", mlp)):
        paths[name] = root / name
        model.save(str(paths[name] / "1"), save_format="tf")
    return paths


def ceiling(model_dir: Path, batch: int, seconds: float, windows: int = 5) -> float:
    """Rows per second of the SavedModel called in-process on full batches: the best of
    ``windows`` one-``seconds`` windows (other work on a shared machine only lowers it)."""
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"]
    x = tf.constant(np.random.default_rng(0).random((batch, 8, 8, 1), dtype=np.float32))
    for _ in range(5):
        serve(image=x)
    best = 0.0
    for _ in range(windows):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(iter(serve(image=x).values())).numpy()
            calls += 1
        best = max(best, calls * batch / (time.perf_counter() - start))
    return best


# -- the naive baseline ---------------------------------------------------------------------------
def run_flask(model_dir: str, port: int) -> None:
    """One model call per request, JSON through Flask's helpers, Werkzeug's threaded server:
    what a first serving script usually looks like."""
    import logging

    import numpy as np
    import tensorflow as tf
    from flask import Flask, jsonify, request

    serve = tf.saved_model.load(str(Path(model_dir) / "1")).signatures["serving_default"]
    input_name = next(iter(serve.structured_input_signature[1]))
    app = Flask("naive")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @app.post("/v1/models/<name>:predict")
    def predict(name: str):
        x = np.asarray(request.get_json()["instances"], dtype=np.float32)
        outputs = serve(**{input_name: tf.constant(x)})
        return jsonify({"predictions": next(iter(outputs.values())).numpy().tolist()})

    app.run(host="127.0.0.1", port=port, threaded=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_flask(model_dir: Path, body: bytes) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--flask-server", str(model_dir), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(urllib.request.Request(url + "/v1/models/m:predict", data=body,
                                                          headers={"Content-Type": "application/json"}),
                                   timeout=5).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the Flask baseline server exited") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the Flask baseline server did not start")


# -- load ----------------------------------------------------------------------------------------------
async def _load(port: int, path: str, body: bytes, clients: int, seconds: float,
                max_requests: int) -> dict:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        reader = writer = None
        while time.perf_counter() < stop_at and len(latencies) + errors < max_requests:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            length, close = 0, lines[0].startswith(b"HTTP/1.0")
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"connection":
                    close = b"close" in value.lower()
            await reader.readexactly(length)
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            if close:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"requests": len(latencies), "errors": errors,
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)
            if latencies else None}


def load(url: str, path: str, body: bytes, clients: int, seconds: float, max_requests: int,
         server_pid: int) -> dict:
    """One level of load, plus the CPU the server and this load generator spent per request
    (on a two-core machine both come out of the same budget as the model's)."""
    import psutil

    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    port = int(url.rsplit(":", 1)[1])
    runner(_load(port, path, body, clients, min(1.0, seconds), max_requests))  # warm up
    server = psutil.Process(server_pid)
    server_cpu = sum(server.cpu_times()[:2])
    client_cpu = time.process_time()
    result = runner(_load(port, path, body, clients, seconds, max_requests))
    done = max(result["requests"] + result["errors"], 1)
    result["server_cpu_ms_per_request"] = round(1000 * (sum(server.cpu_times()[:2]) - server_cpu) / done, 3)
    result["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - client_cpu) / done, 3)
    return result


# -- the run -----------------------------------------------------------------------------------------
def measure(name: str, model_dir: Path, body: bytes, args: argparse.Namespace) -> dict:
    """Both servers up at once, and each level run against one then the other, so that
    load from elsewhere on a shared machine falls on both alike."""
    from cellship.serve import start_server

    ceilings = [ceiling(model_dir, 64, 1.0)]
    result: dict = {"flask": {}, "cellship": {}}
    proc, url = start_flask(model_dir, body)
    try:
        with start_server(str(model_dir), args=args.serve_args.split()) as server:
            for clients in CONCURRENCY:
                key = str(clients)
                result["flask"][key] = load(url, "/v1/models/m:predict", body, clients,
                                            args.duration, args.max_requests, proc.pid)
                result["cellship"][key] = load(server.url, f"/v1/models/{name}:predict", body,
                                               clients, args.duration, args.max_requests, server.pid)
                ceilings.append(ceiling(model_dir, 64, 1.0, windows=2))
            result["cellship_mean_batch"] = _mean_batch(server.url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result["ceiling_rows_per_s"] = round(max(ceilings), 1)
    top = str(CONCURRENCY[-1])
    ours, naive = result["cellship"][top]["requests_per_s"], result["flask"][top]["requests_per_s"]
    result["speedup_vs_flask_at_64"] = round(ours / naive, 2) if naive else None
    result["fraction_of_ceiling_at_64"] = round(ours / result["ceiling_rows_per_s"], 3)
    result["errors"] = sum(level["errors"] for side in ("flask", "cellship")
                           for level in result[side].values())
    result["meets_goal"] = bool(result["speedup_vs_flask_at_64"] and
                                result["speedup_vs_flask_at_64"] >= GOAL_SPEEDUP and
                                result["fraction_of_ceiling_at_64"] >= GOAL_CEILING and
                                result["errors"] == 0)
    print(f"# {name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def _mean_batch(url: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name.startswith("cellship_serving_batch_size_")}
    count = values.get("cellship_serving_batch_size_count")
    return round(values["cellship_serving_batch_size_sum"] / count, 1) if count else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per level (default 6)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests per level at most")
    parser.add_argument("--serve-args", default="", help="extra `cellship serve` options, quoted")
    parser.add_argument("--flask-server", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flask_server:
        run_flask(args.flask_server[0], int(args.flask_server[1]))
        return
    try:
        import flask  # noqa: F401
    except ImportError:
        sys.exit("serving_throughput: the baseline needs Flask: pip install flask (or -e .[bench])")
    import shutil

    import numpy as np

    home = isolated_home()
    root = Path(tempfile.mkdtemp(prefix="cellship-bench-models-"))
    try:
        paths = build_models(root)
        from sklearn.datasets import load_digits

        digit = (load_digits().images[:1] / 16.0).astype("float32").reshape(1, 8, 8, 1)
        body = json.dumps({"instances": np.round(digit, 4).tolist()}).encode()
        load_before = round(os.getloadavg()[0], 2)
        results = {name: measure(name, path, body, args) for name, path in paths.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    import tensorflow as tf

    print(json.dumps({
        "benchmark": "serving_throughput", "machine": machine(), "tensorflow": tf.__version__,
        "load_average_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "duration_s_per_level": args.duration, "concurrency": list(CONCURRENCY),
        "server": "cellship serve --max-batch-size 64 --batch-timeout-ms 0 (defaults) "
                  + args.serve_args,
        "models": results,
        "goals": {"speedup_vs_flask_at_64": GOAL_SPEEDUP, "fraction_of_ceiling_at_64": GOAL_CEILING},
        "meets_goal": all(r["meets_goal"] for r in results.values()),
    }))


if __name__ == "__main__":
    main()
