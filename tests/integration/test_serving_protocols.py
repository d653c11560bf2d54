"""Conformance of ``cellship serve``'s other protocols with other projects' real clients:
TF Serving's gRPC API through TF Serving's own Python stubs (tensorflow-serving-api), and
the Open Inference Protocol (KServe v2 / Triton) through KServe 0.21's REST and gRPC clients
and tritonclient's HTTP and gRPC clients, which run in a venv of their own
(tests/integration/serving_clients.py) as a subprocess against this server. All protocols
share one batcher: requests over four of them at once are answered by fewer model calls."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis.predict_pb2")

from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from cellship.serve.batching import BatchingConfig  # noqa: E402
from cellship.serve.server import BackgroundServer, ServingConfig  # noqa: E402
from tests.integration import serving_models as make  # noqa: E402
from tests.integration.test_serving import call, metric  # noqa: E402

pytestmark = pytest.mark.serving
CLIENT_SCRIPT = Path(__file__).parent / "clients" / "open_inference.py"
DIGITS = np.linspace(0.0, 1.0, 2 * 64, dtype=np.float32).reshape(2, 8, 8, 1)  # as the script sends


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("protocols")
    make.digits(root / "digits" / "1")
    make.half_plus_three(root / "half_plus_three" / "1")
    make.strings(root / "strings" / "1")
    make.multi(root / "multi" / "1")
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path]):
    config = ServingConfig(port=0, grpc_port=0, batching=BatchingConfig(max_batch_size=32, max_wait_ms=5.0))
    with BackgroundServer(model_dirs, config, log=lambda text: None) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def channel(server: BackgroundServer):
    with grpc.insecure_channel(server.server.grpc_target) as opened:
        yield opened


def expected_digits(model_dirs: dict[str, Path], x: np.ndarray) -> np.ndarray:
    loaded = tf.saved_model.load(str(model_dirs["digits"] / "1"))
    return loaded.signatures["serving_default"](image=tf.constant(x))["probabilities"].numpy()


# -- TF Serving's gRPC API with its own stubs -----------------------------------------------------
def test_tf_serving_prediction_service_predict_and_metadata(server, channel, model_dirs) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(DIGITS))
    reply = stub.Predict(request, timeout=30)
    assert reply.model_spec.name == "digits" and reply.model_spec.version.value == 1
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["probabilities"]),
                               expected_digits(model_dirs, DIGITS), rtol=1e-5)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi"
    request.model_spec.version.value = 1
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0]], np.float32)))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto(np.array([3], np.int32)))
    request.output_filter.append("sum")
    reply = stub.Predict(request, timeout=30)
    assert list(reply.outputs) == ["sum"] and tf.make_ndarray(reply.outputs["sum"]).tolist() == [6.0]

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "strings"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([b"ab", b"\xff"]))
    reply = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(reply.outputs["echo_bytes"]).tolist() == [b"ab\xff", b"\xff\xff"]

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest()
    meta_request.model_spec.name = "digits"
    meta_request.metadata_field.append("signature_def")
    meta = stub.GetModelMetadata(meta_request, timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(defs)
    image = defs.signature_def["serving_default"].inputs["image"]
    assert image.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in image.tensor_shape.dim] == [-1, 8, 8, 1]


def test_tf_serving_classify_regress_and_model_status(channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_three"
    regress.model_spec.signature_name = "tensorflow/serving/regress"
    for x in (2.0, 4.0):
        regress.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    assert [r.value for r in stub.Regress(regress, timeout=30).result.regressions] == [4.0, 5.0]

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_three"
    classify.model_spec.signature_name = "tensorflow/serving/classify"
    classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(0.0)
    result = stub.Classify(classify, timeout=30).result.classifications[0]
    assert [(c.label, round(c.score, 5)) for c in result.classes] == [("negative", 0.5), ("positive", 0.5)]

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "digits"
    status = status_stub.GetModelStatus(status_request, timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


@pytest.mark.parametrize("change, code, words", [
    (lambda r: setattr(r.model_spec, "name", "nope"), "NOT_FOUND", ["no model named 'nope'"]),
    (lambda r: r.model_spec.version.__setattr__("value", 9), "NOT_FOUND", ["Specific(digits, 9)"]),
    (lambda r: r.inputs["image"].CopyFrom(tf.make_tensor_proto(DIGITS.astype(np.float64))),
     "INVALID_ARGUMENT", ["'image' is FP64", "FP32"]),
    (lambda r: r.inputs["image"].CopyFrom(tf.make_tensor_proto(DIGITS[:, :4])), "INVALID_ARGUMENT",
     ["shape [2, 4, 8, 1]", "[-1, 8, 8, 1]"]),
    (lambda r: r.output_filter.append("logits"), "INVALID_ARGUMENT", ["'logits'", "probabilities"]),
])
def test_tf_serving_grpc_errors_carry_tf_serving_codes(channel, change, code, words) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(DIGITS))
    change(request)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code().name == code
    for word in words:
        assert word in info.value.details(), info.value.details()


# -- the Open Inference Protocol with KServe's and Triton's clients ----------------------------------
@pytest.fixture(scope="module")
def seen(server: BackgroundServer) -> dict[str, Any]:
    from tests.integration.serving_clients import client_python

    python = client_python()
    seen: dict[str, Any] = {}
    for group in ("kserve", "triton"):  # their generated protos clash in one process
        result = subprocess.run([str(python), str(CLIENT_SCRIPT), server.url, server.server.grpc_target,
                                 group], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        seen.update(json.loads(result.stdout.strip().splitlines()[-1]))
    return seen


def _ok(seen: dict[str, Any], key: str) -> dict[str, Any]:
    value = seen[key]
    assert "error" not in value, value.get("trace", value)
    return value


def test_kserve_rest_client_v1_and_v2(seen, model_dirs) -> None:
    v1 = _ok(seen, "kserve_rest_v1")
    assert v1 == {"live": True, "ready": True, "predictions": [3.5, 4.0]}
    v2 = _ok(seen, "kserve_rest_v2")
    assert v2["live"] is True and v2["ready"] is True and v2["model_ready"] is True
    assert v2["json"] == [3.5, 4.0, 4.5] and v2["id"] == "r1"
    assert v2["binary_name"] == "probabilities"
    np.testing.assert_allclose(v2["binary"], expected_digits(model_dirs, DIGITS), rtol=1e-5)


def test_kserve_grpc_client(seen, model_dirs) -> None:
    got = _ok(seen, "kserve_grpc")
    assert got["live"] is True and got["ready"] is True and got["model_ready"] is True
    assert got["y"] == [3.5, 4.0]
    np.testing.assert_allclose(got["digits"], expected_digits(model_dirs, DIGITS), rtol=1e-5)


@pytest.mark.parametrize("key", ["triton_http", "triton_grpc"])
def test_triton_clients_http_and_grpc(seen, key) -> None:
    got = _ok(seen, key)
    assert (got["live"], got["ready"], got["model_ready"], got["version_ready"]) == (True, True, True, True)
    assert got["missing_version_ready"] is False
    assert got["server"]["name"] == "cellship" and "binary_tensor_data" in got["server"]["extensions"]
    meta = got["metadata"]
    assert meta["name"] == "multi" and meta["platform"] == "tensorflow_savedmodel" and meta["versions"] == ["1"]
    assert {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]} == {
        "a": ("FP32", [-1, 2]), "b": ("INT32", [-1])}
    assert got["sum"] == [13.0, 27.0] and got["scaled_absent"] is True  # only the output asked for
    assert got["upper"] == ["HELLO", "éTé"] and got["length"] == [5, 5]
    assert got["echo_bytes"] == ["68656c6c6fff", "c3a974c3a9ff"]  # non-UTF-8 bytes, binary both ways


def test_triton_clients_see_protocol_errors(seen) -> None:
    got = _ok(seen, "triton_errors")
    for label in ("http", "grpc"):
        assert "'x' is FP64" in got[label]["message"] and "FP32" in got[label]["message"], got[label]
        assert "no model named 'no-such-model'" in got[label + "_missing"]["message"], got
    assert got["http"]["status"] == "400" and got["grpc"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert got["http_missing"]["status"] == "404" and got["grpc_missing"]["status"] == "StatusCode.NOT_FOUND"


# -- v2 REST by hand: the binary extension's framing and the errors ---------------------------------
def test_v2_rest_binary_extension_framing(server) -> None:
    import urllib.request

    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
                                     "parameters": {"binary_data_size": 8}}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    body = header + np.array([1.0, 3.0], "<f4").tobytes()
    request = urllib.request.Request(server.url + "/v2/models/half_plus_three/versions/1/infer", data=body,
                                     headers={"Inference-Header-Content-Length": str(len(header)),
                                              "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        n = int(response.headers["Inference-Header-Content-Length"])
        raw = response.read()
    doc = json.loads(raw[:n])
    assert doc["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]
    assert np.frombuffer(raw[n:], "<f4").tolist() == [3.5, 4.5]


@pytest.mark.parametrize("path, body, status, words", [
    ("/v2/models/nope/infer", {"inputs": []}, 404, ["no model named 'nope'"]),
    ("/v2/models/half_plus_three/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}]},
     400, ["shape [3] has 3 elements", "holds 2"]),
    ("/v2/models/half_plus_three/infer", {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1], "data": [1]}]},
     400, ["no input 'z'", "x (DT_FLOAT"]),
    ("/v2/models/half_plus_three/infer", {"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]},
     400, ["datatype 'FP99'"]),
    ("/v2/models/half_plus_three/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]},
     400, ["does not fit datatype FP32"]),
    ("/v2/models/half_plus_three/versions/4/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
     404, ["Specific(half_plus_three, 4)"]),
    ("/v2/models/half_plus_three/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                                          "outputs": [{"name": "w"}]}, 400, ["no output 'w'", "y"]),
    ("/v2/models/nope/ready", None, 404, ["no model named 'nope'"]),
])
def test_v2_rest_errors_say_what_was_wrong(server, path, body, status, words) -> None:
    got, answer = call(server.url + path, body)
    assert got == status, answer
    for word in words:
        assert word in answer["error"], answer["error"]


def test_all_protocols_share_one_batcher(server, channel, model_dirs) -> None:
    """32 concurrent requests, a quarter each over REST v1, REST v2, TF Serving gRPC and v2
    gRPC, all get the right rows back from fewer model calls than requests."""
    from cellship.serve.openinference.grpc import messages

    m = messages()
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                request_serializer=m.ModelInferRequest.SerializeToString,
                                response_deserializer=m.ModelInferResponse.FromString)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    x = make.digits_input(32)
    want = expected_digits(model_dirs, x)
    got: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(32)

    def one(i: int) -> None:
        row = x[i:i + 1]
        barrier.wait()
        if i % 4 == 0:
            got[i] = np.array(call(server.url + "/v1/models/digits:predict", {"instances": row.tolist()})[1]["predictions"])
        elif i % 4 == 1:
            body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": row.ravel().tolist()}]}
            got[i] = np.array(call(server.url + "/v2/models/digits/infer", body)[1]["outputs"][0]["data"]).reshape(1, 10)
        elif i % 4 == 2:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "digits"
            request.inputs["image"].CopyFrom(tf.make_tensor_proto(row))
            got[i] = tf.make_ndarray(stub.Predict(request, timeout=60).outputs["probabilities"])
        else:
            request = m.ModelInferRequest(model_name="digits")
            request.inputs.add(name="image", datatype="FP32", shape=[1, 8, 8, 1])
            request.raw_input_contents.append(row.astype("<f4").tobytes())
            reply = infer(request, timeout=60)
            got[i] = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(1, 10)

    calls_before = metric(server.url, "cellship_serving_batch_size_count", model="digits")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    calls = metric(server.url, "cellship_serving_batch_size_count", model="digits") - calls_before
    assert sorted(got) == list(range(32))
    for i in range(32):
        np.testing.assert_allclose(got[i][0], want[i], rtol=1e-5, atol=1e-7)
    assert 1 <= calls < 32, f"{calls} model calls for 32 concurrent requests: nothing was batched"
