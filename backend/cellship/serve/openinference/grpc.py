"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``.

Why the messages are declared here: the packages that ship these protos generated
(``kserve``, ``tritonclient[grpc]``) pin ``protobuf<7`` and, for tritonclient,
``ml-dtypes<=0.5.4``, below what TensorFlow's own environment resolves to, and kserve
brings a web framework and a Kubernetes client along. So the service's messages are
declared with protobuf's descriptor API (names, numbers and types exactly as in KServe's
``grpc_predict_v2.proto`` and Triton's ``grpc_service.proto``, which agree; Triton's two
extra parameter kinds included) and served through grpc's generic handlers. No generated
code; the wire format is checked by the conformance tests with KServe's and Triton's own
gRPC clients.

Tensors travel either typed (``contents.fp32_contents`` ...) or as ``raw_input_contents``
in the binary layout of the REST extension; answers use ``raw_output_contents``, as Triton
does and both clients read.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from cellship.serve.errors import RequestError, bad_request
from cellship.serve.openinference import core
from cellship.serve.openinference.tensors import (
    NUMPY,
    check_shape,
    from_raw,
    output_datatype,
    to_raw,
)

if TYPE_CHECKING:
    from cellship.serve.server import ModelServer

SERVICE = "inference.GRPCInferenceService"
_PARAMS = "map:InferParameter"
# message -> [(field, number, type, repeated)]; types: protobuf scalar names, a message name,
# or "map:VALUE" (map<string, VALUE>). Nested messages are written Outer.Inner.
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "ServerLiveRequest": [], "ServerLiveResponse": [("live", 1, "bool", False)],
    "ServerReadyRequest": [], "ServerReadyResponse": [("ready", 1, "bool", False)],
    "ModelReadyRequest": [("name", 1, "string", False), ("version", 2, "string", False)],
    "ModelReadyResponse": [("ready", 1, "bool", False)],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("name", 1, "string", False), ("version", 2, "string", False),
                               ("extensions", 3, "string", True)],
    "ModelMetadataRequest": [("name", 1, "string", False), ("version", 2, "string", False)],
    "ModelMetadataResponse": [("name", 1, "string", False), ("versions", 2, "string", True),
                              ("platform", 3, "string", False),
                              ("inputs", 4, "ModelMetadataResponse.TensorMetadata", True),
                              ("outputs", 5, "ModelMetadataResponse.TensorMetadata", True)],
    "ModelMetadataResponse.TensorMetadata": [("name", 1, "string", False),
                                             ("datatype", 2, "string", False),
                                             ("shape", 3, "int64", True)],
    "ModelInferRequest": [("model_name", 1, "string", False), ("model_version", 2, "string", False),
                          ("id", 3, "string", False), ("parameters", 4, _PARAMS, False),
                          ("inputs", 5, "ModelInferRequest.InferInputTensor", True),
                          ("outputs", 6, "ModelInferRequest.InferRequestedOutputTensor", True),
                          ("raw_input_contents", 7, "bytes", True)],
    "ModelInferRequest.InferInputTensor": [("name", 1, "string", False),
                                           ("datatype", 2, "string", False),
                                           ("shape", 3, "int64", True),
                                           ("parameters", 4, _PARAMS, False),
                                           ("contents", 5, "InferTensorContents", False)],
    "ModelInferRequest.InferRequestedOutputTensor": [("name", 1, "string", False),
                                                     ("parameters", 2, _PARAMS, False)],
    "ModelInferResponse": [("model_name", 1, "string", False), ("model_version", 2, "string", False),
                           ("id", 3, "string", False), ("parameters", 4, _PARAMS, False),
                           ("outputs", 5, "ModelInferResponse.InferOutputTensor", True),
                           ("raw_output_contents", 6, "bytes", True)],
    "ModelInferResponse.InferOutputTensor": [("name", 1, "string", False),
                                             ("datatype", 2, "string", False),
                                             ("shape", 3, "int64", True),
                                             ("parameters", 4, _PARAMS, False),
                                             ("contents", 5, "InferTensorContents", False)],
    "InferParameter": [("bool_param", 1, "bool", False), ("int64_param", 2, "int64", False),
                       ("string_param", 3, "string", False), ("double_param", 4, "double", False),
                       ("uint64_param", 5, "uint64", False)],
    "InferTensorContents": [("bool_contents", 1, "bool", True), ("int_contents", 2, "int32", True),
                            ("int64_contents", 3, "int64", True), ("uint_contents", 4, "uint32", True),
                            ("uint64_contents", 5, "uint64", True), ("fp32_contents", 6, "float", True),
                            ("fp64_contents", 7, "double", True), ("bytes_contents", 8, "bytes", True)],
}
_METHODS = {"ServerLive": "ServerLive", "ServerReady": "ServerReady", "ModelReady": "ModelReady",
            "ServerMetadata": "ServerMetadata", "ModelMetadata": "ModelMetadata",
            "ModelInfer": "ModelInfer"}
# v2 datatype -> the typed contents field that carries it
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """The protocol's message classes, by name (``messages().ModelInferRequest``)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    scalars = {"bool": F.TYPE_BOOL, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES,
               "int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32,
               "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE}
    file = descriptor_pb2.FileDescriptorProto(name="cellship/open_inference.proto",
                                              package="inference", syntax="proto3")
    protos: dict[str, Any] = {}
    for full in _MESSAGES:  # parents come before their nested messages in _MESSAGES
        outer, _, inner = full.rpartition(".")
        container = protos[outer].nested_type if outer else file.message_type
        protos[full] = container.add(name=inner)
    for full, fields in _MESSAGES.items():
        message = protos[full]
        if full == "InferParameter":
            message.oneof_decl.add(name="parameter_choice")
        for name, number, kind, repeated in fields:
            field = message.field.add(name=name, number=number)
            field.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            if full == "InferParameter":
                field.oneof_index = 0
            if kind.startswith("map:"):
                entry = message.nested_type.add(name=f"{name.title()}Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                                type_name=f".inference.{kind[4:]}")
                field.label, field.type = F.LABEL_REPEATED, F.TYPE_MESSAGE
                field.type_name = f".inference.{full}.{entry.name}"
            elif kind in scalars:
                field.type = scalars[kind]
            else:
                field.type, field.type_name = F.TYPE_MESSAGE, f".inference.{kind}"
    service = file.service.add(name="GRPCInferenceService")
    for method in _METHODS:
        service.method.add(name=method, input_type=f".inference.{method}Request",
                           output_type=f".inference.{method}Response")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return SimpleNamespace(**{full.replace(".", "_"): message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"inference.{full}")) for full in _MESSAGES})


def _inputs(request: Any) -> dict[str, tuple[str, np.ndarray]]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise bad_request(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} "
                          "inputs; give one per input, or none and use contents.")
    given: dict[str, tuple[str, np.ndarray]] = {}
    for i, tensor in enumerate(request.inputs):
        name, datatype = tensor.name, tensor.datatype
        if datatype not in NUMPY:
            raise bad_request(f"Input {name!r}: datatype {datatype!r} is not one of "
                              f"{', '.join(NUMPY)}.")
        shape = check_shape(name, list(tensor.shape))
        if name in given:
            raise bad_request(f"Input {name!r} is given twice.")
        if raw:
            value = from_raw(name, datatype, shape, raw[i])
        else:
            if datatype == "FP16":
                raise bad_request(f"Input {name!r} is FP16, which has no typed contents field; "
                                  "send it in raw_input_contents.")
            items = list(getattr(tensor.contents, CONTENTS[datatype]))
            count = int(np.prod(shape)) if shape else 1
            if len(items) != count:
                raise bad_request(f"Input {name!r}: shape {list(shape)} has {count} elements, its "
                                  f"contents hold {len(items)}.")
            dtype = NUMPY[datatype]
            value = (np.array(items, dtype=object) if datatype == "BYTES"
                     else np.array(items, dtype=dtype)).reshape(shape)
        given[name] = (datatype, value)
    return given


class OpenInferenceService:
    """The six methods, each answering through the server's shared paths."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.m = messages()

    async def _abort(self, context: grpc.aio.ServicerContext, err: RequestError) -> None:
        from cellship.serve.tfserving_grpc import grpc_code

        await context.abort(grpc_code(err.status), str(err))

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.m.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.m.ServerReadyResponse(ready=self.server.ready())

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.m.ServerMetadataResponse(**core.server_metadata())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return self.m.ModelReadyResponse(
                ready=core.model_ready(self.server, request.name, request.version or None))
        except RequestError as err:
            await self._abort(context, err)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            meta = core.model_metadata(self.server, request.name, request.version or None)
        except RequestError as err:
            await self._abort(context, err)
            raise
        tensor = self.m.ModelMetadataResponse_TensorMetadata
        return self.m.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]])

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from cellship.serve.tfserving_grpc import answer

        async def work() -> Any:
            requested = [o.name for o in request.outputs] or None
            signature = request.parameters["signature_name"].string_param \
                if "signature_name" in request.parameters else None
            result = await core.infer(self.server, request.model_name,
                                      request.model_version or None, _inputs(request), requested,
                                      signature or None)
            response = self.m.ModelInferResponse(model_name=request.model_name,
                                                 model_version=str(result.version), id=request.id)
            for name, value in result.outputs.items():
                datatype = output_datatype(value)
                response.outputs.add(name=name, datatype=datatype, shape=list(value.shape))
                response.raw_output_contents.append(to_raw(value, datatype))
            return response

        return await answer(self.server, context, request.model_name, "infer", work)


def add_open_inference(grpc_server: grpc.aio.Server, server: ModelServer) -> None:
    service = OpenInferenceService(server)
    m = service.m
    handlers = {method: grpc.unary_unary_rpc_method_handler(
        getattr(service, method),
        request_deserializer=getattr(m, f"{method}Request").FromString,
        response_serializer=getattr(m, f"{method}Response").SerializeToString)
        for method in _METHODS}
    grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


__all__ = ["messages", "add_open_inference", "SERVICE"]
