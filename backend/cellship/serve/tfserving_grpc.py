"""TF Serving's gRPC API: ``tensorflow.serving.PredictionService`` (Predict, Classify,
Regress, GetModelMetadata) and ``ModelService.GetModelStatus``.

Why these protos: ``tensorflow-serving-api`` is TF Serving's own published client package,
so a client written against TF Serving (its stubs, its TensorProtos) talks to cellship
unchanged. It declares a dependency on the full ``tensorflow`` wheel, so cellship installs
it with ``--no-deps`` beside ``tensorflow-cpu`` (the Makefile does); only the protos and
the generated service classes are used.

Every method answers through ``ModelServer.run_signature`` - the REST path's batchers, time
limit and drain gate - and turns a RequestError's HTTP status into the gRPC code TF Serving
uses for it (400 INVALID_ARGUMENT, 404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

import grpc
import numpy as np

from cellship.errors import MissingDependency
from cellship.serve.errors import RequestError, bad_request
from cellship.serve.openinference.tensors import V2_OF_TF, check_inputs

try:
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )
except ImportError as err:  # pragma: no cover - the Makefile installs it
    raise MissingDependency(
        "TF Serving's gRPC API needs the tensorflow-serving-api package: pip install --no-deps "
        f"tensorflow-serving-api (it would pull the full tensorflow wheel otherwise) ({err}).") from None

if TYPE_CHECKING:
    from cellship.serve.server import ModelServer

T = TypeVar("T")
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
         405: grpc.StatusCode.UNIMPLEMENTED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
         503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}


def grpc_code(status: int) -> grpc.StatusCode:
    return CODES.get(status, grpc.StatusCode.INTERNAL)


async def answer(server: ModelServer, context: grpc.aio.ServicerContext, name: str, verb: str,
                 work: Callable[[], Awaitable[T]]) -> T:
    """Run one RPC through the drain gate and the metrics; errors become gRPC statuses."""
    try:
        with server.gate.request():
            return await server.measured(name, verb, work)
    except RequestError as err:
        await context.abort(grpc_code(err.status), str(err))
        raise  # abort raises; this line is for the type checker
    except Exception as err:
        import traceback

        traceback.print_exc()
        await context.abort(grpc.StatusCode.INTERNAL, f"Internal error while answering {verb} for "
                                                      f"{name}: {type(err).__name__}: {err}")
        raise


def _version(spec: Any) -> int | None:
    if spec.HasField("version_label"):
        raise bad_request("Version labels are not configured on this server; name a version "
                          "(model_spec.version) or none for the newest.")
    return int(spec.version.value) if spec.HasField("version") else None


def _answered_by(response: Any, model: str, version: int, signature: str) -> None:
    """Fill a response's ``model_spec`` the way TF Serving does: the model, the version that
    answered and the signature it ran."""
    response.model_spec.name = model
    response.model_spec.version.value = version
    response.model_spec.signature_name = signature


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    def _state(self, spec: Any) -> Any:
        return self.server.repository.model(spec.name).resolve(_version(spec))

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        import tensorflow as tf
        from tensorflow.core.framework import types_pb2

        async def work() -> Any:
            spec = request.model_spec
            state = self._state(spec)
            sig = state.loaded().signature(spec.signature_name or "serving_default")
            given = {}
            for name, proto in request.inputs.items():
                dt = types_pb2.DataType.Name(proto.dtype)
                try:
                    value = tf.make_ndarray(proto)
                except (TypeError, ValueError) as err:
                    raise bad_request(f"Input {name!r} is not a valid TensorProto: {err}") from None
                given[name] = (V2_OF_TF.get(dt, dt), value)
            checked = check_inputs(sig.info, given, spec.name)
            wanted = list(request.output_filter)
            known = [o.name for o in sig.info.outputs]
            for out in wanted:
                if out not in known:
                    raise bad_request(f"output_filter names {out!r}, which signature "
                                      f"{sig.info.key!r} does not have; its outputs: {', '.join(known)}.")
            outputs = await self.server.run_signature(spec.name, state, sig, checked.tensors,
                                                      checked.rows)
            response = predict_pb2.PredictResponse()
            _answered_by(response, spec.name, state.version, sig.info.key)
            for out, value in outputs.items():
                if not wanted or out in wanted:
                    response.outputs[out].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
            return response

        return await answer(self.server, context, request.model_spec.name, "predict", work)

    async def _examples(self, request: Any, verb: str) -> tuple[Any, dict[str, np.ndarray]]:
        spec = request.model_spec
        state = self._state(spec)
        model = state.loaded()
        key = spec.signature_name or "serving_default"
        sig = model.signature(key)
        able = sig.info.can_classify if verb == "classify" else sig.info.can_regress
        if not able:
            raise bad_request(f"Signature {key!r} of model {spec.name} cannot {verb}: it takes "
                              f"{sig.info.takes()}; {verb} needs one DT_STRING input of "
                              "serialized tf.Example.")
        kind = request.input.WhichOneof("kind")
        if kind == "example_list":
            examples = list(request.input.example_list.examples)
        elif kind == "example_list_with_context":
            with_context = request.input.example_list_with_context
            examples = []
            for example in with_context.examples:
                merged = type(example)()
                merged.CopyFrom(with_context.context)
                merged.MergeFrom(example)
                examples.append(merged)
        else:
            raise bad_request(f"The {verb} request has no input examples (input.example_list).")
        if not examples:
            raise bad_request(f"The {verb} request's example list is empty.")
        serialized = np.array([e.SerializeToString() for e in examples], dtype=object)
        rows = len(serialized) if sig.info.batchable else None
        outputs = await self.server.run_signature(spec.name, state, sig,
                                                  {sig.info.inputs[0].name: serialized}, rows)
        return (state, sig), outputs

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> Any:
            (state, sig), outputs = await self._examples(request, "classify")
            response = classification_pb2.ClassificationResponse()
            _answered_by(response, request.model_spec.name, state.version, sig.info.key)
            classes, scores = outputs.get("classes"), outputs.get("scores")
            rows = len(classes if classes is not None else scores)  # type: ignore[arg-type]
            for i in range(rows):
                entry = response.result.classifications.add()
                count = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
                for j in range(count):
                    item = entry.classes.add()
                    if classes is not None:
                        label = classes[i][j]
                        item.label = label.decode() if isinstance(label, bytes) else str(label)
                    if scores is not None:
                        item.score = float(scores[i][j])
            return response

        return await answer(self.server, context, request.model_spec.name, "classify", work)

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> Any:
            (state, sig), outputs = await self._examples(request, "regress")
            response = regression_pb2.RegressionResponse()
            _answered_by(response, request.model_spec.name, state.version, sig.info.key)
            for value in np.asarray(next(iter(outputs.values()))).reshape(-1):
                response.result.regressions.add().value = float(value)
            return response

        return await answer(self.server, context, request.model_spec.name, "regress", work)

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.protobuf import json_format

        async def work() -> Any:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise bad_request(f"Metadata field(s) {fields} are not supported; ask for "
                                  "metadata_field: [\"signature_def\"].")
            spec = request.model_spec
            state = self._state(spec)
            defs = json_format.ParseDict({"signature_def": state.loaded().signature_defs_json},
                                         get_model_metadata_pb2.SignatureDefMap())
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = state.version
            response.metadata["signature_def"].Pack(defs)
            return response

        return await answer(self.server, context, request.model_spec.name, "metadata", work)

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "MultiInference is not supported by cellship serve; send one Classify "
                            "or Regress request per signature.")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.protobuf import json_format

        async def work() -> Any:
            spec = request.model_spec
            model = self.server.repository.model(spec.name)
            version = _version(spec)
            states = sorted(model.versions.items(), reverse=True)
            if version is not None:
                states = [(v, s) for v, s in states if v == version]
                if not states:
                    raise RequestError(f"Servable not found for request: Specific({spec.name}, "
                                       f"{version}).", 404)
            elif not states:
                raise RequestError(f"Could not find any versions of model {spec.name}.", 404)
            return json_format.ParseDict(
                {"model_version_status": [s.status_json() for _, s in states]},
                get_model_status_pb2.GetModelStatusResponse())

        return await answer(self.server, context, request.model_spec.name, "status", work)

    async def HandleReloadConfigRequest(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "cellship serve watches its model directories instead of taking a "
                            "model config: add or remove a numbered version directory.")


def add_tf_serving(grpc_server: grpc.aio.Server, server: ModelServer) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(server),
                                                                        grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(server), grpc_server)
