"""The Open Inference Protocol over HTTP: the ``/v2`` routes on the server's aiohttp app.

    GET  /v2                                   server metadata (name, version, extensions)
    GET  /v2/health/live                       {"live": true}
    GET  /v2/health/ready                      {"ready": bool}; 503 while loading or draining
    GET  /v2/models/M[/versions/V]             model metadata (typed inputs and outputs)
    GET  /v2/models/M[/versions/V]/ready       {"name", "ready"}; 503 when not ready
    POST /v2/models/M[/versions/V]/infer       typed tensors in, typed tensors out

The binary tensor extension: a request whose ``Inference-Header-Content-Length`` header is
N has N bytes of JSON, then the bytes of each input that declares
``parameters.binary_data_size``, in order. Outputs asked for with
``parameters.binary_data`` (or all, with the request parameter ``binary_data_output``)
come back the same way. Errors are ``{"error": "..."}``, as in TF Serving's API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from aiohttp import web

from cellship.serve.errors import bad_request, not_found
from cellship.serve.openinference import core
from cellship.serve.openinference.tensors import (
    NUMPY,
    check_shape,
    from_list,
    from_raw,
    output_datatype,
    to_list,
    to_raw,
)

if TYPE_CHECKING:
    from cellship.serve.server import ModelServer

HEADER_LENGTH = "Inference-Header-Content-Length"
_PATH = re.compile(r"^(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<action>ready|infer))?/?$")


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def add_v2_routes(app: web.Application, server: ModelServer) -> None:
    """Register the v2 routes, answering through ``server``."""

    async def metadata(request: web.Request) -> web.StreamResponse:
        return _json(core.server_metadata())

    async def live(request: web.Request) -> web.StreamResponse:
        return _json({"live": True})

    async def ready(request: web.Request) -> web.StreamResponse:
        ok = server.ready()
        return _json({"ready": ok}, status=200 if ok else 503)

    async def models(request: web.Request) -> web.StreamResponse:
        match = _PATH.match(request.match_info["tail"])
        if match is None:
            raise not_found(f"No such endpoint: {request.path}. Use /v2/models/NAME"
                            "[/versions/N][/ready|/infer].")
        name, version, action = match["name"], match["version"], match["action"]
        if action == "infer":
            if request.method != "POST":
                return web.Response(body=orjson.dumps({"error": f"/infer takes POST, not "
                                                                f"{request.method}."}),
                                    status=405, content_type="application/json")
            return await server.measured(name, "infer", lambda: _infer(server, request, name, version))
        if request.method != "GET":
            return web.Response(body=orjson.dumps({"error": f"{request.method} is not allowed on "
                                                            f"{request.path}; use GET."}),
                                status=405, content_type="application/json")
        if action == "ready":
            ok = core.model_ready(server, name, version)
            return _json({"name": name, "ready": ok}, status=200 if ok else 503)
        return _json(core.model_metadata(server, name, version))

    app.router.add_get("/v2", metadata)
    app.router.add_get("/v2/", metadata)
    app.router.add_get("/v2/health/live", live)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_route("*", "/v2/models/{tail:.*}", models)


def _split(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    if header_length is None:
        return _parse(body), b""
    try:
        n = int(header_length)
    except ValueError:
        raise bad_request(f"{HEADER_LENGTH} must be a number of bytes, got {header_length!r}.") from None
    if not 0 <= n <= len(body):
        raise bad_request(f"{HEADER_LENGTH} is {n}, but the body has only {len(body)} bytes.")
    return _parse(body[:n]), body[n:]


def _parse(text: bytes) -> Any:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"The request is not valid JSON: {err}.") from None
    if not isinstance(doc, dict):
        raise bad_request("The request must be a JSON object with \"inputs\".")
    return doc


def _params(entry: Any, where: str) -> dict[str, Any]:
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad_request(f"{where}: 'parameters' must be an object.")
    return params


async def _infer(server: ModelServer, request: web.Request, name: str,
                 version: str | None) -> web.StreamResponse:
    server.repository.model(name)  # an unknown model is a 404 whatever the body
    body = await server.body(request)
    doc, binary = _split(body, request.headers.get(HEADER_LENGTH))
    entries = doc.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise bad_request("The request needs \"inputs\": a list of {\"name\", \"shape\", "
                          "\"datatype\", \"data\"}.")
    inputs: dict[str, tuple[str, np.ndarray]] = {}
    offset = 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad_request("Every input needs a \"name\".")
        tname = entry["name"]
        if tname in inputs:
            raise bad_request(f"Input {tname!r} is given twice.")
        datatype = entry.get("datatype")
        if datatype not in NUMPY:
            raise bad_request(f"Input {tname!r}: datatype {datatype!r} is not one of "
                              f"{', '.join(NUMPY)}.")
        shape = check_shape(tname, entry.get("shape"))
        size = _params(entry, f"Input {tname!r}").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise bad_request(f"Input {tname!r}: binary_data_size {size!r} does not fit the "
                                  f"{len(binary) - offset} binary bytes left in the request.")
            value = from_raw(tname, datatype, shape, binary[offset:offset + size])
            offset += size
        else:
            value = from_list(tname, datatype, shape, entry.get("data"))
        inputs[tname] = (datatype, value)
    params = _params(doc, "The request")
    all_binary = bool(params.get("binary_data_output"))
    requested: list[str] | None = None
    binary_outputs: set[str] = set()
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise bad_request("\"outputs\" must be a list of {\"name\"}.")
        requested = []
        for out in doc["outputs"]:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise bad_request("Every requested output needs a \"name\".")
            out_params = _params(out, f"Output {out['name']!r}")
            if "classification" in out_params:
                raise bad_request("The classification extension is not supported; ask for the "
                                  "scores and take the top classes yourself.")
            requested.append(out["name"])
            if out_params.get("binary_data", all_binary):
                binary_outputs.add(out["name"])
    sig_name = params.get("signature_name")
    result = await core.infer(server, name, version, inputs, requested,
                              sig_name if isinstance(sig_name, str) else None)
    if requested is None and all_binary:
        binary_outputs = set(result.outputs)
    outputs, chunks = [], []
    for oname, value in result.outputs.items():
        datatype = output_datatype(value)
        tensor: dict[str, Any] = {"name": oname, "datatype": datatype, "shape": list(value.shape)}
        if oname in binary_outputs:
            raw = to_raw(value, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = to_list(oname, value, datatype)
        outputs.append(tensor)
    response: dict[str, Any] = {"model_name": name, "model_version": str(result.version),
                                "outputs": outputs}
    if isinstance(doc.get("id"), str):
        response["id"] = doc["id"]
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return web.Response(body=header, content_type="application/json")
    return web.Response(body=header + b"".join(chunks), content_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(len(header))})
