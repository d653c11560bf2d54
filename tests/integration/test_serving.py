"""The TF-Serving-compatible server with real SavedModels over real HTTP on 127.0.0.1:
both request formats, b64, classify/regress, every error status, dynamic batching seen in
the Prometheus metrics, versions appearing and disappearing while it runs, overload, and
``cellship serve`` as a process that leaves nothing behind."""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from cellship.errors import ExportError  # noqa: E402
from cellship.serve import export as models  # noqa: E402
from cellship.serve.batching import BatchingConfig  # noqa: E402
from cellship.serve.server import BackgroundServer, ServingConfig  # noqa: E402
from tests.integration import serving_models as make  # noqa: E402

pytestmark = pytest.mark.serving


def call(url: str, body: Any = None, method: str | None = None,
         raw: bytes | None = None) -> tuple[int, Any]:
    """(status, parsed JSON body) of one request; HTTP errors are answers too."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text.decode()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    make.digits(root / "digits" / "1")
    make.half_plus_three(root / "half_plus_three" / "123")
    make.strings(root / "strings" / "1")
    make.multi(root / "multi" / "1")
    make.slow(root / "slow" / "1")
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path]):
    served = {k: v for k, v in model_dirs.items() if k != "slow"}
    config = ServingConfig(port=0, max_body_bytes=300_000,
                           batching=BatchingConfig(max_batch_size=32, max_wait_ms=3.0))
    with BackgroundServer(served, config, log=lambda text: None) as running:
        running.wait_ready()
        yield running


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of the server's /metrics, read with Prometheus' own text parser."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def expected_digits(model_dirs: dict[str, Path], x: np.ndarray) -> np.ndarray:
    loaded = tf.saved_model.load(str(model_dirs["digits"] / "1"))
    return loaded.signatures["serving_default"](image=tf.constant(x))["probabilities"].numpy()


# -- TF Serving's documented behaviour ---------------------------------------------------------
def test_status_and_metadata_follow_tf_serving(server: BackgroundServer) -> None:
    status, body = call(server.url + "/v1/models/half_plus_three")
    assert status == 200
    versions = {"model_version_status": [{"version": "123", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    # TF Serving's answer, plus KServe's v1 readiness shape that its InferenceRESTClient reads
    assert body == {**versions, "name": "half_plus_three", "ready": True}
    assert call(server.url + "/v1/models/half_plus_three/versions/123")[1] == versions
    status, meta = call(server.url + "/v1/models/digits/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["image"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    assert "probabilities" in sig["outputs"]
    status, health = call(server.url + "/healthz")
    assert status == 200 and health["status"] == "ready"
    assert health["models"]["digits"]["available_versions"] == [1]


def test_the_documented_half_plus_three_calls(server: BackgroundServer) -> None:
    """The requests and answers of TF Serving's REST API page, verbatim."""
    url = server.url + "/v1/models/half_plus_three"
    assert call(url + ":predict", {"instances": [1.0, 2.0, 5.0]}) == (200, {"predictions": [3.5, 4.0, 5.5]})
    assert call(url + ":regress", {"signature_name": "tensorflow/serving/regress",
                                   "examples": [{"x": 1.0}, {"x": 2.0}]}) == (200, {"results": [3.5, 4.0]})
    status, body = call(server.url + "/v1/models/half:predict", {"instances": [1.0, 5.0]})
    assert status == 404 and "Servable not found" in body["error"]
    status, body = call(url + ":classify", {"signature_name": "tensorflow/serving/classify",
                                            "examples": [{"x": 0.0}, {"x": 10.0}]})
    assert status == 200
    assert [[label for label, _ in row] for row in body["results"]] == [["negative", "positive"]] * 2
    assert body["results"][0][1][1] == pytest.approx(0.5) and body["results"][1][1][1] > 0.99
    assert call(url + ":predict", {"inputs": [1.0, 2.0]}) == (200, {"outputs": [3.5, 4.0]})


def test_digits_rows_and_columns_match_the_model(server: BackgroundServer,
                                                 model_dirs: dict[str, Path]) -> None:
    x = make.digits_input(5)
    want = expected_digits(model_dirs, x)
    status, rows = call(server.url + "/v1/models/digits:predict", {"instances": x.tolist()})
    assert status == 200
    np.testing.assert_allclose(rows["predictions"], want, rtol=1e-5, atol=1e-6)
    status, cols = call(server.url + "/v1/models/digits/versions/1:predict",
                        {"signature_name": "serving_default", "inputs": {"image": x.tolist()}})
    assert status == 200
    np.testing.assert_allclose(cols["outputs"], want, rtol=1e-5, atol=1e-6)


def test_b64_binary_values_in_and_out(server: BackgroundServer) -> None:
    raw = b"\x00\x01binary\xfe"
    status, body = call(server.url + "/v1/models/strings:predict",
                        {"instances": [{"b64": base64.b64encode(raw).decode()}, "abc"]})
    assert status == 200
    first, second = body["predictions"]
    assert first["length"] == len(raw) and second == {
        "length": 3, "upper": "ABC", "echo_bytes": {"b64": base64.b64encode(b"abc\xff").decode()}}
    assert base64.b64decode(first["echo_bytes"]["b64"]) == raw + b"\xff"
    status, body = call(server.url + "/v1/models/strings:predict", {"inputs": ["x", "yz"]})
    assert status == 200 and body["outputs"]["length"] == [1, 2]


def test_several_named_inputs_as_row_objects_or_columns(server: BackgroundServer) -> None:
    url = server.url + "/v1/models/multi:predict"
    status, rows = call(url, {"instances": [{"a": [1, 2], "b": 3}, {"a": [0.5, 0.5], "b": 2}]})
    assert status == 200
    assert rows["predictions"] == [{"scaled": [3.0, 6.0], "sum": 6.0}, {"scaled": [1.0, 1.0], "sum": 3.0}]
    status, cols = call(url, {"inputs": {"a": [[1, 2], [0.5, 0.5]], "b": [3, 2]}})
    assert status == 200 and cols["outputs"] == {"scaled": [[3.0, 6.0], [1.0, 1.0]], "sum": [6.0, 3.0]}


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path, payload, status, words", [
    ("digits:predict", b"{\"instances\": [1,", 400, ["Malformed JSON"]),
    ("digits:predict", {"inputs": {"pixels": [[0]]}}, 400, ["'pixels'", "image (DT_FLOAT, shape [-1, 8, 8, 1])"]),
    ("digits:predict", {"instances": [[1.0, 2.0]]}, 400, ["'image'", "[8, 8, 1]", "got instances of shape [2]"]),
    ("digits:predict", {"instances": [[[["a"]] * 8] * 8]}, 400, ["'image'", "DT_FLOAT", "got strings"]),
    ("multi:predict", {"inputs": {"a": [[1, 2]], "b": [0.5]}}, 400, ["'b'", "DT_INT32", "decimal numbers"]),
    ("digits:classify", {"examples": [{"x": 1.0}]}, 400, ["'serving_default'", "cannot classify", "image"]),
    ("half_plus_three:regress", {"examples": [{"x": 1.0}]}, 400, ["'serving_default'", "cannot regress",
                                                                   "tensorflow/serving/regress"]),
    ("digits:predict", {"signature_name": "nope", "instances": [1]}, 400, ["no signature 'nope'"]),
    ("nope:predict", {"instances": [1]}, 404, ["no model named 'nope'", "digits"]),
    ("digits/versions/9:predict", {"instances": [1]}, 404, ["Specific(digits, 9)", "available versions: 1"]),
    ("digits/versions/9", None, 404, ["Specific(digits, 9)"]),
    ("digits/labels/stable:predict", {"instances": [1]}, 404, ["labels are not configured"]),
    ("digits:explain", {"instances": [1]}, 404, ["Unknown method :explain"]),
])
def test_bad_requests_get_json_errors_that_name_the_problem(server: BackgroundServer, path: str,
                                                            payload: Any, status: int,
                                                            words: list[str]) -> None:
    raw = payload if isinstance(payload, bytes) else None
    got, body = call(f"{server.url}/v1/models/{path}", None if raw else payload, raw=raw,
                     method="GET" if payload is None else "POST")
    assert got == status, body
    assert set(body) == {"error"}
    for word in words:
        assert word in body["error"], body["error"]


def test_method_size_and_path_errors(server: BackgroundServer) -> None:
    status, body = call(server.url + "/v1/models/digits:predict", method="GET")
    assert status == 405 and "POST" in body["error"]
    status, body = call(server.url + "/v1/models/digits:predict",
                        raw=b'{"instances": [' + b"0.0," * 200_000 + b"0.0]}")
    assert status == 413 and "0.8 MB; this server accepts at most 0.3 MB" in body["error"] and "--max-request-bytes" in body["error"]
    status, body = call(server.url + "/v2/whatever")
    assert status == 404 and "/v1/models/NAME" in body["error"]
    # the server is fine afterwards
    assert call(server.url + "/v1/models/half_plus_three:predict", {"instances": [1.0]})[0] == 200


# -- batching, load ------------------------------------------------------------------------------
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
        server: BackgroundServer, model_dirs: dict[str, Path]) -> None:
    n = 48
    x = make.digits_input(n)
    want = expected_digits(model_dirs, x)
    calls_before = metric(server.url, "cellship_serving_batch_size_count", model="digits")
    singles_before = metric(server.url, "cellship_serving_batch_size_bucket", le="1.0", model="digits")
    results: dict[int, Any] = {}
    start = threading.Barrier(n)

    def client(i: int) -> None:
        start.wait()
        results[i] = call(server.url + "/v1/models/digits:predict", {"instances": x[i:i + 1].tolist()})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == list(range(n))
    for i, (status, body) in results.items():
        assert status == 200, body
        np.testing.assert_allclose(body["predictions"][0], want[i], rtol=1e-5, atol=1e-6)
    calls = metric(server.url, "cellship_serving_batch_size_count", model="digits") - calls_before
    singles = metric(server.url, "cellship_serving_batch_size_bucket", le="1.0", model="digits") - singles_before
    rows = n
    assert calls < rows, "every request ran alone: nothing was batched"
    assert calls - singles > 0, "the batch-size histogram shows no batch larger than 1"
    assert metric(server.url, "cellship_serving_requests_total", model="digits", verb="predict",
                  code="200") >= n
    assert metric(server.url, "cellship_serving_request_latency_seconds_count", model="digits") >= n


def test_an_overloaded_server_answers_every_request(model_dirs: dict[str, Path]) -> None:
    config = ServingConfig(port=0, batching=BatchingConfig(max_batch_size=1, max_queue_rows=2))
    with BackgroundServer({"slow": model_dirs["slow"]}, config, log=lambda text: None) as running:
        running.wait_ready()
        outcomes: list[tuple[int, Any]] = []
        lock = threading.Lock()

        def client() -> None:
            answer = call(running.url + "/v1/models/slow:predict", {"instances": [[1.0]]})
            with lock:
                outcomes.append(answer)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert len(outcomes) == 16  # none lost
    assert {status for status, _ in outcomes} <= {200, 503}
    refused = [body for status, body in outcomes if status == 503]
    assert refused and all("overloaded" in b["error"] and "--max-queue 2" in b["error"] for b in refused)
    assert any(status == 200 and body == {"predictions": [[1.0]]} for status, body in outcomes)


# -- versions -------------------------------------------------------------------------------------
def test_new_versions_are_served_without_a_restart(model_dirs: dict[str, Path]) -> None:
    src = model_dirs["digits"] / "1"
    example = {"instances": make.digits_input(1).tolist()}
    first = models.export_saved_model(src, "digits", example=example)
    assert first.model.version == 1 and first.example_response["predictions"]
    name, base = models.resolve("digits")
    config = ServingConfig(port=0, poll_interval_s=0.2)
    with BackgroundServer({name: base}, config, log=lambda text: None) as running:
        running.wait_ready()
        url = running.url + "/v1/models/digits"
        assert call(url + "/metadata")[1]["model_spec"]["version"] == "1"
        second = models.export_saved_model(src, "digits")
        assert second.model.version == 2
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = {s["version"]: s["state"] for s in call(url)[1]["model_version_status"]}
            if states.get("2") == "AVAILABLE":
                break
            time.sleep(0.1)
        assert states == {"1": "AVAILABLE", "2": "AVAILABLE"}
        assert call(url + "/metadata")[1]["model_spec"]["version"] == "2"  # newest by default
        one = call(url + "/versions/1:predict", example)
        two = call(url + "/versions/2:predict", example)
        assert one[0] == two[0] == 200 and one[1] == two[1]  # both served at once
        shutil.rmtree(first.model.path)
        deadline = time.monotonic() + 20
        while call(url + "/versions/1:predict", example)[0] != 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body = call(url + "/versions/1:predict", example)
        assert status == 404 and "available versions: 2" in body["error"]
        assert {s["version"]: s["state"] for s in call(url)[1]["model_version_status"]} == {
            "1": "END", "2": "AVAILABLE"}


def test_export_refuses_a_model_that_does_not_answer_the_example(model_dirs: dict[str, Path]) -> None:
    with pytest.raises(ExportError) as info:
        models.export_saved_model(model_dirs["digits"] / "1", "digits",
                                  example={"instances": [[1.0, 2.0]]})
    assert "400" in str(info.value) and "'image'" in str(info.value) and "Nothing was stored" in str(info.value)
    assert models.list_models() == []
    with pytest.raises(ExportError, match="no 'serving_default' signature"):
        module = make.Multi()
        path = model_dirs["multi"].parent / "no-default"
        tf.saved_model.save(module, str(path), signatures={"other": module.serve})
        models.export_saved_model(path, "no-default")


# -- the command ------------------------------------------------------------------------------------
def test_cellship_serve_process_answers_and_stops_cleanly(model_dirs: dict[str, Path]) -> None:
    """`cellship serve digits --port 0` as a process (through start_server, which reads the
    URL it prints and waits for /healthz); SIGTERM ends it with exit code 0."""
    from cellship.serve import start_server

    models.export_saved_model(model_dirs["digits"] / "1", "digits")
    server = start_server("digits", ready_timeout=90)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        x = make.digits_input(2)
        status, body = call(server.model_url("digits") + ":predict", {"instances": x.tolist()})
        assert status == 200 and len(body["predictions"]) == 2
        assert call(server.url + "/")[1]["status"] == "alive"
    finally:
        code = server.stop()
    assert code == 0
    log = server.log_path.read_text()
    assert "serving digits from" in log and "stopping" in log and "Traceback" not in log
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/healthz", timeout=2)  # nothing listens any more
    import psutil

    assert not psutil.pid_exists(server.pid)


def test_start_server_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    from cellship.serve import start_server
    from cellship.serve.process import ServerFailed

    with pytest.raises(ServerFailed) as info:
        start_server("no-such-model", ready_timeout=60)
    assert "exited with code 1" in str(info.value) and "No model named 'no-such-model'" in str(info.value)


# -- a client written by others -------------------------------------------------------------------
def test_responses_parse_as_tensorflow_serving_protos(server: BackgroundServer) -> None:
    """Status and metadata JSON read back into TF Serving's own protos (tensorflow-serving-api,
    installed with --no-deps: it would otherwise pull the full tensorflow wheel)."""
    status_pb2 = pytest.importorskip("tensorflow_serving.apis.get_model_status_pb2")
    metadata_pb2 = pytest.importorskip("tensorflow_serving.apis.get_model_metadata_pb2")
    from google.protobuf import json_format
    from tensorflow_serving.apis import model_pb2

    _, status = call(server.url + "/v1/models/digits")
    # KServe's v1 readiness shape rides along ({"name", "ready"}); the rest is TF Serving's, strictly
    assert (status.pop("name"), status.pop("ready")) == ("digits", True)
    parsed = json_format.ParseDict(status, status_pb2.GetModelStatusResponse())
    assert parsed.model_version_status[0].version == 1
    assert parsed.model_version_status[0].state == status_pb2.ModelVersionStatus.AVAILABLE
    _, meta = call(server.url + "/v1/models/digits/metadata")
    spec = json_format.ParseDict(meta["model_spec"], model_pb2.ModelSpec())
    assert spec.name == "digits" and spec.version.value == 1
    sigs = json_format.ParseDict(meta["metadata"]["signature_def"], metadata_pb2.SignatureDefMap())
    image = sigs.signature_def["serving_default"].inputs["image"]
    assert image.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in image.tensor_shape.dim] == [-1, 8, 8, 1]
