"""Run INSIDE the serving-clients venv (KServe's and Triton's own clients), never imported by
pytest: ``python open_inference.py REST_URL GRPC_TARGET kserve|triton`` prints one JSON object of
what each client saw, for tests/integration/test_serving_protocols.py to check. KServe's and
Triton's generated protos both define the ``inference`` package and cannot share one
process's descriptor pool, so each group runs in a process of its own.

Each check catches its own exception and reports it as {"error": "..."}, so one broken
call shows up as one failed key, not as a crash that hides the rest."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback

import numpy as np

URL, TARGET, GROUP = sys.argv[1], sys.argv[2], sys.argv[3]
DIGITS = np.linspace(0.0, 1.0, 2 * 64, dtype=np.float32).reshape(2, 8, 8, 1)
results: dict[str, object] = {}


def check(name):
    def wrap(fn):
        if not name.startswith(GROUP):
            return fn
        try:
            value = fn()
            results[name] = asyncio.run(value) if asyncio.iscoroutine(value) else value
        except Exception as err:  # report, go on with the next check
            results[name] = {"error": f"{type(err).__name__}: {err}",
                             "trace": traceback.format_exc()[-1500:]}
        return fn
    return wrap


# -- KServe 0.21's InferenceRESTClient, v1 and v2 -----------------------------------------------
@check("kserve_rest_v1")
async def _():
    from kserve import InferenceRESTClient, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
    try:
        out = await client.infer(URL, {"instances": [1.0, 2.0]}, model_name="half_plus_three")
        return {"live": await client.is_server_live(URL),
                "ready": await client.is_model_ready(URL, "half_plus_three"),
                "predictions": out["predictions"]}
    finally:
        await client.close()


@check("kserve_rest_v2")
async def _():
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        json_input = InferInput("x", [3], "FP32", data=[1.0, 2.0, 3.0])
        as_json = await client.infer(URL, InferRequest("half_plus_three", [json_input], request_id="r1"),
                                     model_name="half_plus_three")
        binary_input = InferInput("image", list(DIGITS.shape), "FP32")
        binary_input.set_data_from_numpy(DIGITS, binary_data=True)
        binary = await client.infer(URL, InferRequest("digits", [binary_input]), model_name="digits")
        probs = binary.outputs[0].as_numpy()
        return {"live": await client.is_server_live(URL), "ready": await client.is_server_ready(URL),
                "model_ready": await client.is_model_ready(URL, "digits"),
                "json": as_json.outputs[0].as_numpy().tolist(), "id": as_json.id,
                "binary_name": binary.outputs[0].name, "binary": probs.tolist()}
    finally:
        await client.close()


@check("kserve_grpc")
async def _():
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    client = InferenceGRPCClient(TARGET, retries=0)
    try:
        typed = InferInput("x", [2], "FP32", data=[1.0, 2.0])
        out = await client.infer(InferRequest("half_plus_three", [typed]))
        image = InferInput("image", list(DIGITS.shape), "FP32")
        image.set_data_from_numpy(DIGITS)
        digits = await client.infer(InferRequest("digits", [image]))
        return {"live": await client.is_server_live(), "ready": await client.is_server_ready(),
                "model_ready": await client.is_model_ready("digits"),
                "y": out.outputs[0].as_numpy().tolist(), "digits": digits.outputs[0].as_numpy().tolist()}
    finally:
        await client.close()


# -- Triton's tritonclient, HTTP and gRPC ---------------------------------------------------------
def triton(module, url):
    client = module.InferenceServerClient(url)
    meta = client.get_model_metadata("multi")
    meta = meta if isinstance(meta, dict) else {"name": meta.name, "platform": meta.platform,
                                                "versions": list(meta.versions),
                                                "inputs": [{"name": t.name, "datatype": t.datatype,
                                                            "shape": list(t.shape)} for t in meta.inputs]}
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([10, 20], dtype=np.int32)
    inputs = [module.InferInput("a", list(a.shape), "FP32"), module.InferInput("b", [2], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    kwargs = {"binary_data": False} if module.__name__.endswith("http") else {}
    multi = client.infer("multi", inputs, outputs=[module.InferRequestedOutput("sum", **kwargs)])
    text = np.array([b"hello", b"\xc3\xa9t\xc3\xa9"], dtype=object)
    strings_in = module.InferInput("text", [2], "BYTES")
    strings_in.set_data_from_numpy(text)
    strings = client.infer("strings", [strings_in], model_version="1")
    return {"live": client.is_server_live(), "ready": client.is_server_ready(),
            "model_ready": client.is_model_ready("digits"),
            "version_ready": client.is_model_ready("digits", "1"),
            "missing_version_ready": client.is_model_ready("digits", "7"),
            "server": (lambda m: m if isinstance(m, dict) else {"name": m.name, "extensions": list(m.extensions)})(
                client.get_server_metadata()),
            "metadata": meta, "sum": multi.as_numpy("sum").tolist(),
            "scaled_absent": multi.as_numpy("scaled") is None,
            "upper": [v.decode() for v in strings.as_numpy("upper").tolist()],
            "length": strings.as_numpy("length").tolist(),
            "echo_bytes": [v.hex() for v in strings.as_numpy("echo_bytes").tolist()]}


@check("triton_http")
def _():
    import tritonclient.http as http

    return triton(http, URL.split("//", 1)[1])


@check("triton_grpc")
def _():
    import tritonclient.grpc as tgrpc

    return triton(tgrpc, TARGET)


@check("triton_errors")
def _():
    import tritonclient.grpc as tgrpc
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    seen = {}
    for label, module, url in (("http", http, URL.split("//", 1)[1]), ("grpc", tgrpc, TARGET)):
        client = module.InferenceServerClient(url)
        wrong = module.InferInput("x", [2], "FP64")
        wrong.set_data_from_numpy(np.array([1.0, 2.0]))
        try:
            client.infer("half_plus_three", [wrong])
            seen[label] = "no error"
        except InferenceServerException as err:
            seen[label] = {"status": str(err.status()), "message": err.message()}
        try:
            client.get_model_metadata("no-such-model")
            seen[label + "_missing"] = "no error"
        except InferenceServerException as err:
            seen[label + "_missing"] = {"status": str(err.status()), "message": err.message()}
    return seen


print(json.dumps(results))
