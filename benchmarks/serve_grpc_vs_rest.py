"""gRPC vs REST on the same `cellship serve` process, the same model and the same batcher.

    .venv/bin/python benchmarks/serve_grpc_vs_rest.py [--duration 4] [--clients 1,16,64]

Four ways to send one 8x8 digits image per request to the same server:
- rest-v1-json: TF Serving's REST API, `{"instances": [...]}` (benchmarks/serving_throughput.py's load);
- rest-v2-binary: the Open Inference Protocol over HTTP with the binary tensor extension;
- grpc-tfserving: TF Serving's PredictionService.Predict with a TensorProto (its own stubs);
- grpc-v2: the Open Inference Protocol's ModelInfer with raw_input_contents.
Load comes from this process (asyncio; keep-alive HTTP connections, one grpc.aio channel),
at each concurrency for --duration seconds. On a two-core machine the load generator shares
the cores with the server it measures: the numbers compare protocols, not machines.
No goal is asserted; the results go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import isolated_home, machine


def build_model(root: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    cnn = tf_keras.Sequential([
        tf_keras.Input(shape=(8, 8, 1), name="image"),
        tf_keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ])
    cnn.save(str(root / "digits" / "1"), save_format="tf")
    return root / "digits"


def summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    latencies.sort()
    return {"requests": len(latencies), "errors": errors,
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)
            if latencies else None}


async def http_load(port: int, path: str, body: bytes, clients: int, seconds: float,
                    headers: dict[str, str] | None = None) -> dict:
    """Keep-alive HTTP/1.1 over raw asyncio streams (as serving_throughput.py's load, plus
    extra headers): the client's own cost stays small next to the server's."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines[1:]
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            if int(lines[0].split()[1]) == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return summary(latencies, errors, time.perf_counter() - began)


async def grpc_load(target: str, make_call, clients: int, seconds: float) -> dict:
    import grpc

    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = make_call(channel)
        await call()  # warm the channel
        stop_at = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    await call()
                    latencies.append(time.perf_counter() - started)
                except grpc.RpcError:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return summary(latencies, errors, time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--clients", default="1,16,64")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    isolated_home()

    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from cellship.serve import start_server
    from cellship.serve.openinference.grpc import messages

    model = build_model(Path(tempfile.mkdtemp(prefix="cellship-bench-model-")))
    x = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
    v1_body = json.dumps({"instances": x.tolist()}).encode()
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1],
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    v2_body = header + x.astype("<f4").tobytes()
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "digits"
    predict.inputs["image"].CopyFrom(tf.make_tensor_proto(x))
    m = messages()
    infer = m.ModelInferRequest(model_name="digits")
    infer.inputs.add(name="image", datatype="FP32", shape=[1, 8, 8, 1])
    infer.raw_input_contents.append(x.astype("<f4").tobytes())

    def tfserving_call(channel):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return lambda: stub.Predict(predict, timeout=30)

    def v2_call(channel):
        method = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                     request_serializer=m.ModelInferRequest.SerializeToString,
                                     response_deserializer=m.ModelInferResponse.FromString)
        return lambda: method(infer, timeout=30)

    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    server = start_server(str(model), args=["--request-timeout", "30"])
    results: dict[str, dict] = {}
    try:
        port = int(server.url.rsplit(":", 1)[1])
        import psutil

        served, me = psutil.Process(server.pid), psutil.Process()
        v2_headers = {"Inference-Header-Content-Length": str(len(header))}
        for clients in levels:
            jobs = {
                "rest-v1-json": lambda n: http_load(port, "/v1/models/digits:predict", v1_body, n,
                                                    args.duration),
                "rest-v2-binary": lambda n: http_load(port, "/v2/models/digits/infer", v2_body, n,
                                                      args.duration, v2_headers),
                "grpc-tfserving": lambda n: grpc_load(server.grpc_target, tfserving_call, n, args.duration),
                "grpc-v2": lambda n: grpc_load(server.grpc_target, v2_call, n, args.duration),
            }
            for name, job in jobs.items():
                cpu = [sum(p.cpu_times()[:2]) for p in (served, me)]
                result = run(job(clients))
                spent = [sum(p.cpu_times()[:2]) - c for p, c in zip((served, me), cpu)]
                n = max(result["requests"], 1)
                result["server_cpu_ms_per_request"] = round(1000 * spent[0] / n, 3)
                result["client_cpu_ms_per_request"] = round(1000 * spent[1] / n, 3)
                results.setdefault(name, {})[str(clients)] = result
                print(f"{name} at {clients} clients: {result}", file=sys.stderr)
    finally:
        server.stop()
    print(json.dumps({"benchmark": "serve_grpc_vs_rest", "machine": machine(),
                      "date": time.strftime("%Y-%m-%d"), "duration_s": args.duration,
                      "results": results}))


if __name__ == "__main__":
    main()
