"""What a production rollout needs from ``cellship serve``, against real SavedModels on
127.0.0.1: a time limit on hung model calls (504 / DEADLINE_EXCEEDED naming the model and
the limit), a request size limit on every protocol (413 / RESOURCE_EXHAUSTED), TF
Serving's batching parameters file, and a graceful drain on SIGTERM shown by requests sent
through it (REST and gRPC) with zero failures."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis.predict_pb2")

from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from cellship.serve.server import BackgroundServer, ServingConfig  # noqa: E402
from tests.integration import serving_models as make  # noqa: E402
from tests.integration.test_serving import call, metric  # noqa: E402

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def sleepy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make.sleepy(tmp_path_factory.mktemp("sleepy") / "sleepy" / "1").parent


def predict_request(name: str, x: np.ndarray) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return request


def test_a_hung_model_call_answers_504_naming_the_model_and_the_limit(sleepy: Path) -> None:
    config = ServingConfig(port=0, grpc_port=0, request_timeout_s=0.2)
    with BackgroundServer({"sleepy": sleepy}, config, log=lambda text: None) as server:
        server.wait_ready()
        long = [[20000.0]]  # ~1 s of work on an idle core: five times the limit
        status, body = call(server.url + "/v1/models/sleepy:predict", {"instances": long})
        assert status == 504, body
        assert "Model sleepy version 1 did not answer within 0.2 s" in body["error"]
        assert "--request-timeout" in body["error"]
        status, body = call(server.url + "/v2/models/sleepy/infer", {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [20000.0]}]})
        assert status == 504 and "within 0.2 s" in body["error"]
        with grpc.insecure_channel(server.server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(predict_request("sleepy", np.array([[20000.0]], np.float32)), timeout=60)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "Model sleepy version 1 did not answer within 0.2 s" in info.value.details()
            # the given-up calls still hold the model's batch thread (TensorFlow cannot be
            # interrupted); once they end, quick calls answer again
            for _ in range(300):
                try:
                    reply = stub.Predict(predict_request("sleepy", np.array([[1.0]], np.float32)), timeout=60)
                    break
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err
            assert tf.make_ndarray(reply.outputs["y"]).tolist() == [[2.0]]
        assert metric(server.url, "cellship_serving_requests_total", model="sleepy", verb="predict",
                      code="504") >= 2  # REST v1 and gRPC; v2 counts under verb "infer"
        assert metric(server.url, "cellship_serving_requests_total", model="sleepy", verb="infer",
                      code="504") == 1


def test_every_protocol_refuses_a_request_over_the_size_limit(sleepy: Path) -> None:
    config = ServingConfig(port=0, grpc_port=0, max_body_bytes=50_000)
    big = np.ones((20_000, 1), np.float32)  # 80 kB of floats, more as JSON
    with BackgroundServer({"sleepy": sleepy}, config, log=lambda text: None) as server:
        server.wait_ready()
        status, body = call(server.url + "/v1/models/sleepy:predict", {"instances": big.tolist()})
        assert status == 413 and "accepts at most 50000 bytes" in body["error"]
        assert "--max-request-bytes" in body["error"]
        status, body = call(server.url + "/v2/models/sleepy/infer", {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [20_000, 1], "data": big.ravel().tolist()}]})
        assert status == 413 and "at most 50000 bytes" in body["error"]
        with grpc.insecure_channel(server.server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(predict_request("sleepy", big), timeout=60)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            small = stub.Predict(predict_request("sleepy", big[:10]), timeout=60)
            assert tf.make_ndarray(small.outputs["y"]).shape == (10, 1)


# -- SIGTERM during traffic -------------------------------------------------------------------------
BATCHING = """
# TF Serving's format, as its --batching_parameters_file reads it
max_batch_size { value: 8 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
allowed_batch_sizes: 4
allowed_batch_sizes: 8
"""


def batch_sizes(url: str) -> dict[str, float]:
    """The sleepy model's batch size histogram buckets ({le: count}) from one scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    return {sample.labels["le"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "cellship_serving_batch_size_bucket"
            and sample.labels.get("model") == "sleepy"}


class Tally:
    """Outcomes of the requests sent through the drain, by kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {"ok": 0, "refused": 0, "failed": 0, "ok_after_sigterm": 0}
        self.failures: list[str] = []
        self.refusals: list[str] = []

    def add(self, kind: str, detail: str = "", after_sigterm: bool = False) -> None:
        with self.lock:
            self.counts[kind] += 1
            if kind == "ok" and after_sigterm:
                self.counts["ok_after_sigterm"] += 1
            if kind == "failed":
                self.failures.append(detail)
            if kind == "refused":
                self.refusals.append(detail)


def test_sigterm_drains_rest_and_grpc_traffic_with_zero_failures(sleepy: Path, tmp_path: Path) -> None:
    """Clients keep sending (3 REST, 1 gRPC) while one long request is in flight; SIGTERM.
    Readiness must go false first; the clients, as a load balancer would, stop sending once
    they see it; requests during the grace second are answered; after it new requests get 503
    with the reason while the long one is still running; the long one finishes with the right
    answer; the process exits 0. Any other outcome of any request is a failure."""
    from cellship.serve import start_server

    params = tmp_path / "batching.txt"
    params.write_text(BATCHING)
    long_model = make.sleepy(tmp_path / "long" / "1").parent  # its own batcher: the long call blocks no one
    server = start_server(str(sleepy), str(long_model), args=["--drain-grace", "1", "--intra-op-threads", "1",
                                             "--batching_parameters_file", str(params)],
                          ready_timeout=120)
    predict = server.model_url("sleepy") + ":predict"
    tally = Tally()
    not_ready = threading.Event()
    sigterm = threading.Event()
    health: list[tuple[int, Any]] = []

    def watch_health() -> None:  # the load balancer's readiness probe
        while not not_ready.is_set():
            try:
                status, body = call(server.url + "/healthz")
            except OSError as err:  # gone without saying so first: checked below
                status, body = 0, str(err)
            health.append((status, body))
            if status != 200:
                not_ready.set()
            time.sleep(0.05)

    def rest_client(i: int) -> None:
        while not not_ready.is_set():
            after = sigterm.is_set()
            try:
                status, body = call(predict, {"instances": [[1.0 + i]]})
            except OSError as err:
                tally.add("failed", f"REST: {type(err).__name__}: {err}")
                return
            if status == 200 and body["predictions"] == [[2.0 * (1.0 + i)]]:
                tally.add("ok", after_sigterm=after)
            elif status == 503 and "shutting down" in body.get("error", ""):
                tally.add("refused", body["error"])
                return
            else:
                tally.add("failed", f"REST {status}: {body}")
                return

    def grpc_client() -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not not_ready.is_set():
                after = sigterm.is_set()
                try:
                    reply = stub.Predict(predict_request("sleepy", np.array([[3.0]], np.float32)), timeout=60)
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in (err.details() or ""):
                        tally.add("refused", err.details())
                        return
                    tally.add("failed", f"gRPC {err.code()}: {err.details()}")
                    return
                ok = tf.make_ndarray(reply.outputs["y"]).tolist() == [[6.0]]
                tally.add("ok" if ok else "failed", "" if ok else "gRPC: wrong answer", after_sigterm=after)

    long_answer: list[tuple[int, Any]] = []
    long_request = threading.Thread(target=lambda: long_answer.append(call(
        server.model_url("long") + ":predict", {"instances": [[90000.0]]})), daemon=True)  # ~5 s idle
    threads = [threading.Thread(target=rest_client, args=(i,), daemon=True) for i in range(3)]
    threads += [threading.Thread(target=grpc_client, daemon=True),
                threading.Thread(target=watch_health, daemon=True)]
    try:
        for thread in threads:
            thread.start()
        while tally.counts["ok"] < 20:  # traffic is flowing
            time.sleep(0.05)
        sizes = batch_sizes(server.url)  # one scrape: traffic goes on meanwhile
        assert sizes["+Inf"] >= 20 / 8
        assert sizes["2.0"] == 0, "allowed_batch_sizes 4, 8: a batch of one request is padded to 4 rows"
        assert sizes["8.0"] == sizes["+Inf"], "max_batch_size 8"
        long_request.start()
        time.sleep(0.3)  # the long request is in flight
        sigterm.set()
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        assert tally.failures == [], tally.failures
        # after the grace second, new requests are refused with a reason; the long one still runs
        while True:
            status, body = call(predict, {"instances": [[1.0]]})
            if status == 503:
                break
            assert status == 200, (status, body)  # answered during the grace period
        assert "shutting down" in body["error"] and "another replica" in body["error"]
        with grpc.insecure_channel(server.grpc_target) as channel:  # gRPC is refused alike
            with pytest.raises(grpc.RpcError) as info:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                    predict_request("sleepy", np.array([[1.0]], np.float32)), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in info.value.details()
        assert call(server.url + "/v2/health/ready") == (503, {"ready": False})
        assert call(server.url + "/v2/health/live") == (200, {"live": True})
        assert long_request.is_alive(), "the long request should still be in flight"
        long_request.join(timeout=120)
        code = server.process.wait(timeout=60)
    finally:
        if server.running():
            server.stop(timeout=5)
    assert tally.failures == [] and tally.counts["failed"] == 0, tally.failures
    assert long_answer == [(200, {"predictions": [[180000.0]]})]
    assert code == 0
    assert health[-1][0] == 503 and health[-1][1]["status"] == "draining"
    assert all(status == 200 for status, _ in health[:-1])
    log = server.log_path.read_text()
    assert "draining: readiness is false" in log and "Traceback" not in log
    print(f"drain: {tally.counts} (+1 long request answered 200, +1 refused probe)")
