"""Serving peers side by side: `cellship serve` vs BentoML (adaptive batching), Ray Serve
(``@serve.batch``), KServe's Python model server and the naive Flask server, on the same
SavedModel, with the same load generator, in one run.

    bash benchmarks/peers/setup.sh                      # once: one venv per peer
    .venv/bin/python benchmarks/peers/serving.py [--duration 4] [--clients 1,8,64,256]

Why one run: the machine these numbers come from (2 cores) is shared, so every server is
started at once and each concurrency level is run against one server after the other;
load from elsewhere then falls on all of them alike. The load generator is
benchmarks/serving_throughput.py's (raw keep-alive HTTP/1.1 over asyncio) and
benchmarks/serve_grpc_vs_rest.py's gRPC one; the model is serving_throughput.py's digits
CNN, one 8x8 image per request, TF Serving's ``{"instances": [...]}`` body for every REST
server. Goal (issue 15): at 64 clients cellship answers >= 1.5x the requests per second of
the best peer, with a p99 no worse than that peer's. The peers run from their own venvs
(setup.sh); a peer whose venv is missing or whose server fails to start is reported in the
output with its error, never dropped. The script prints a markdown table and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import _peers  # noqa: E402
import serving_throughput  # noqa: E402  (its model, its Flask server, its HTTP load generator)
from _common import isolated_home, machine  # noqa: E402

GOAL_RATIO = 1.5
GOAL_CLIENTS = 64
_TEMP_DIRS: list[str] = []  # short ones outside the work dir (Ray's sockets), removed at the end


@dataclass
class Target:
    """One way into one server: REST (port + path + body) or gRPC (target + call factory)."""

    server: str
    protocol: str
    pid: int
    port: int = 0
    path: str = ""
    body: bytes = b""
    grpc_target: str = ""
    make_call: Callable[[Any], Callable[[], Any]] | None = None
    results: dict[str, dict] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, body: bytes, timeout: float, log: Path) -> None:
    """Until a real prediction answers 200: a peer is ready when it serves, not when it logs."""
    end = time.monotonic() + timeout
    last = ""
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n" + _tail(log))
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    url, data=body, headers={"Content-Type": "application/json"}), timeout=10) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"not answering {url} after {timeout:.0f} s ({last}):\n" + _tail(log))


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_peer(name: str, model_dir: Path, body: bytes, workdir: Path,
               timeout: float) -> tuple[subprocess.Popen, list[Target]]:
    """Start one peer's server from its own venv; its REST (and gRPC) targets."""
    port = free_port()
    log = workdir / f"{name}.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    env.pop("CELLSHIP_HOME", None)
    grpc_port = 0
    if name == "flask":
        cmd = [_peers.python("flask"), str(HERE.parent / "serving_throughput.py"), "--flask-server",
               str(model_dir), str(port)]
        path = "/v1/models/m:predict"
    elif name == "kserve":
        grpc_port = free_port()
        cmd = [_peers.python("kserve"), str(HERE / "servers.py"), "kserve", str(model_dir), str(port),
               str(grpc_port)]
        path = "/v1/models/digits:predict"
    elif name == "rayserve":
        # Ray's socket paths live under RAY_TMPDIR and must fit AF_UNIX's 107 bytes.
        env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rs", dir="/tmp")
        _TEMP_DIRS.append(env["RAY_TMPDIR"])
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        cmd = [_peers.python("ray"), str(HERE / "servers.py"), "rayserve", str(model_dir), str(port)]
        path = "/"
    elif name == "bentoml":
        env.update(PEER_MODEL_DIR=str(model_dir), BENTOML_HOME=str(workdir / "bentoml"),
                   BENTOML_DO_NOT_TRACK="True")
        cmd = [str(_peers.venv("bentoml") / "bin" / "bentoml"), "serve", "bento_service:Digits",
               "--working-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port)]
        path = "/predict"
    else:
        raise ValueError(name)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=HERE,
                                start_new_session=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}{path}", body, timeout, log)
    except Exception:
        stop(proc)
        raise
    targets = [Target(name, "REST v1 JSON" if name != "bentoml" and name != "rayserve" else "REST JSON",
                      proc.pid, port=port, path=path, body=body)]
    if grpc_port:
        targets.append(Target(name, "gRPC v2", proc.pid, grpc_target=f"127.0.0.1:{grpc_port}",
                              make_call=_v2_call("digits")))
    return proc, targets


def bentoml_grpc_probe(workdir: Path) -> str:
    """BentoML's gRPC: ``bentoml serve-grpc`` on the same service; what it answers (the
    ``@bentoml.service`` API of BentoML >= 1.2 has no gRPC server)."""
    env = dict(os.environ, PEER_MODEL_DIR="/nonexistent", BENTOML_HOME=str(workdir / "bentoml"),
               BENTOML_DO_NOT_TRACK="True")
    try:
        proc = subprocess.run([str(_peers.venv("bentoml") / "bin" / "bentoml"), "serve-grpc", "bento_service:Digits",
                               "--working-dir", str(HERE), "--port", str(free_port())],
                              capture_output=True, text=True, env=env, cwd=HERE, timeout=60)
    except subprocess.TimeoutExpired:
        return "bentoml serve-grpc started (not measured)"
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {proc.returncode}"


def stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


# -- gRPC calls (the same messages as benchmarks/serve_grpc_vs_rest.py) -------------------------------
def _image():
    from sklearn.datasets import load_digits

    return (load_digits().images[:1] / 16.0).astype("float32").reshape(1, 8, 8, 1).round(4)


def _v2_call(model: str) -> Callable[[Any], Callable[[], Any]]:
    def make(channel: Any) -> Callable[[], Any]:
        from cellship.serve.openinference.grpc import messages

        m = messages()
        x = _image()
        infer = m.ModelInferRequest(model_name=model)
        infer.inputs.add(name="image", datatype="FP32", shape=list(x.shape))
        infer.raw_input_contents.append(x.astype("<f4").tobytes())
        method = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                     request_serializer=m.ModelInferRequest.SerializeToString,
                                     response_deserializer=m.ModelInferResponse.FromString)
        return lambda: method(infer, timeout=30)
    return make


def _tfserving_call(model: str) -> Callable[[Any], Callable[[], Any]]:
    def make(channel: Any) -> Callable[[], Any]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        predict = predict_pb2.PredictRequest()
        predict.model_spec.name = model
        predict.inputs["image"].CopyFrom(tf.make_tensor_proto(_image()))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return lambda: stub.Predict(predict, timeout=30)
    return make


# -- load ------------------------------------------------------------------------------------------
def run_level(target: Target, clients: int, seconds: float, max_requests: int, runner) -> dict:
    """A short warm-up, then one measured level; CPU per request of the server (its whole
    process tree) and of this load generator."""
    from serve_grpc_vs_rest import grpc_load

    def once(duration: float) -> dict:
        if target.make_call is None:
            return runner(serving_throughput._load(target.port, target.path, target.body, clients,
                                                   duration, max_requests))
        return runner(grpc_load(target.grpc_target, target.make_call, clients, duration))

    try:
        once(min(0.5, seconds))
        server_cpu, client_cpu = _peers.cpu_seconds(target.pid), time.process_time()
        result = once(seconds)
    except Exception as exc:  # a peer falling over under load is a result, not a crash
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    done = max(result["requests"] + result["errors"], 1)
    result["server_cpu_ms_per_request"] = round(1000 * (_peers.cpu_seconds(target.pid) - server_cpu) / done, 3)
    result["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - client_cpu) / done, 3)
    return result


def table(targets: list[Target], levels: list[int]) -> str:
    head = "| server | protocol | " + " | ".join(f"{n} clients: req/s, p50 / p99 ms" for n in levels) + " |"
    rows = [head, "| " + " | ".join(["---"] * (2 + len(levels))) + " |"]
    for t in targets:
        cells = []
        for n in levels:
            r = t.results.get(str(n), {})
            if "error" in r:
                cells.append("error: " + r["error"][:60])
            elif r:
                errs = f" ({r['errors']} errors)" if r.get("errors") else ""
                cells.append(f"{r['requests_per_s']:,.0f}, {r['p50_ms']} / {r['p99_ms']}{errs}")
            else:
                cells.append("-")
        rows.append(f"| {t.server} | {t.protocol} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def goal(targets: list[Target]) -> dict:
    """cellship's REST v1 (the body every peer gets) against the best peer at 64 clients."""
    key = str(GOAL_CLIENTS)

    def ok(t: Target) -> bool:
        r = t.results.get(key, {})
        return bool(r.get("requests")) and not r.get("errors") and "error" not in r

    ours = next((t for t in targets if t.server == "cellship" and t.protocol == "REST v1 JSON"), None)
    peers = [t for t in targets if t.server != "cellship" and ok(t)]
    if ours is None or not ok(ours) or not peers:
        return {"meets_goal": False, "why": "cellship or every peer had no clean result at 64 clients"}
    best = max(peers, key=lambda t: t.results[key]["requests_per_s"])
    mine, theirs = ours.results[key], best.results[key]
    ratio = mine["requests_per_s"] / theirs["requests_per_s"]
    return {"best_peer": f"{best.server} {best.protocol}", "ratio": round(ratio, 2),
            "cellship_p99_ms": mine["p99_ms"], "best_peer_p99_ms": theirs["p99_ms"],
            "meets_goal": ratio >= GOAL_RATIO and mine["p99_ms"] <= theirs["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per level (default 4)")
    parser.add_argument("--clients", default="1,8,64,256", help="concurrency levels (default 1,8,64,256)")
    parser.add_argument("--peers", default="flask,bentoml,rayserve,kserve",
                        help="peers to start (default: all of flask,bentoml,rayserve,kserve)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests per level at most")
    parser.add_argument("--ready-timeout", type=float, default=240.0, help="seconds a server may take to start")
    parser.add_argument("--model", default="digits-cnn", choices=("digits-cnn", "digits-mlp"))
    args = parser.parse_args()
    levels = sorted({int(n) for n in args.clients.split(",")})  # results are keyed by level: no repeats
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run

    home = isolated_home()
    workdir = Path(tempfile.mkdtemp(prefix="cellship-peers-serving-"))
    procs: list[subprocess.Popen] = []
    failed: dict[str, str] = {}
    no_grpc: dict[str, str] = {
        "rayserve": "not measured: Ray Serve has no built-in TF Serving or Open Inference Protocol gRPC API; its "
                    "gRPC proxy serves services the user compiles in (gRPCOptions.grpc_servicer_functions), "
                    "which this benchmark does not do"}
    server = None
    load_averages: list[tuple[str, list[float]]] = []
    try:
        model_dir = serving_throughput.build_models(workdir / "models")[args.model]
        body = json.dumps({"instances": _image().tolist()}).encode()
        from cellship.serve import start_server

        server = start_server(str(model_dir), args=["--request-timeout", "30"])
        name = model_dir.name
        targets = [Target("cellship", "REST v1 JSON", server.pid, port=int(server.url.rsplit(":", 1)[1]),
                          path=f"/v1/models/{name}:predict", body=body),
                   Target("cellship", "gRPC TF Serving", server.pid, grpc_target=server.grpc_target,
                          make_call=_tfserving_call(name)),
                   Target("cellship", "gRPC v2", server.pid, grpc_target=server.grpc_target,
                          make_call=_v2_call(name))]
        for peer in [p for p in args.peers.split(",") if p]:
            started = time.monotonic()
            try:
                proc, more = start_peer(peer, model_dir, body, workdir, args.ready_timeout)
            except Exception as exc:
                failed[peer] = f"{type(exc).__name__}: {exc}"
                print(f"# {peer} could not run: {failed[peer]}", file=sys.stderr, flush=True)
                continue
            procs.append(proc)
            targets.extend(more)
            if peer == "bentoml":
                no_grpc["bentoml"] = bentoml_grpc_probe(workdir)
            print(f"# {peer} ready in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        load_averages.append(("all servers up", [round(v, 2) for v in os.getloadavg()]))
        for clients in levels:
            for target in targets:
                target.results[str(clients)] = run_level(target, clients, args.duration,
                                                         args.max_requests, runner)
                print(f"# {target.server} {target.protocol} at {clients}: {target.results[str(clients)]}",
                      file=sys.stderr, flush=True)
            load_averages.append((f"after {clients} clients", [round(v, 2) for v in os.getloadavg()]))
    finally:
        if server is not None:
            server.stop()
        for proc in procs:
            stop(proc)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        for path in _TEMP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
    import tensorflow as tf

    versions = {"cellship": _peers.git_describe(), "tensorflow": tf.__version__}
    for peer, venv_name, names in (("flask", "flask", ("flask", "werkzeug")), ("bentoml", "bentoml", ("bentoml",)),
                                   ("rayserve", "ray", ("ray",)), ("kserve", "kserve", ("kserve", "grpcio", "protobuf"))):
        try:
            versions.update({f"{peer}:{k}": v for k, v in _peers.versions(venv_name, names).items()})
        except _peers.PeerMissing:
            pass
    print(table(targets, levels))
    print()
    print("load averages (1, 5, 15 min): " + "; ".join(f"{w}: {v}" for w, v in load_averages))
    for peer, error in failed.items():
        print(f"could not run: {peer}: {error}")
    for peer, why in no_grpc.items():
        if peer in args.peers.split(","):
            print(f"no gRPC: {peer}: {why}")
    result = {"benchmark": "peers/serving", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "model": args.model, "duration_s_per_level": args.duration, "clients": levels,
              "versions": versions, "load_averages": load_averages, "could_not_run": failed,
              "no_grpc": {p: w for p, w in no_grpc.items() if p in args.peers.split(",")},
              "results": {f"{t.server} {t.protocol}": t.results for t in targets}, "goal": goal(targets)}
    print(f"goal (cellship REST v1 >= {GOAL_RATIO}x the best peer at {GOAL_CLIENTS} clients, p99 no worse): "
          f"{result['goal']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
