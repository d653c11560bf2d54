"""Loading a SavedModel version and running its signatures (imports TensorFlow).

Signatures are read twice on purpose: the SignatureDef protos in ``saved_model.pb`` are
what TF Serving reports as metadata (so ``GET .../metadata`` is byte-for-byte its
format), and ``tf.saved_model.load(...).signatures`` are what runs. Both agree on names,
dtypes and shapes; the protos also carry the method name (predict / classify / regress).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cellship.errors import ExportError
from cellship.serve.codec.requests import (
    ExamplesRequest,
    PredictRequest,
    decode_examples,
    decode_predict,
    parse_json,
    signature_name,
)
from cellship.serve.codec.responses import encode_classify, encode_predict, encode_regress
from cellship.serve.codec.signature import SignatureInfo, TensorSpecInfo
from cellship.serve.errors import RequestError, bad_request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

INIT_OP_KEY = "__saved_model_init_op"
VERBS = ("predict", "classify", "regress")


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """TensorFlow's thread pools, before the first op runs (TF Serving's
    --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism). 0 keeps
    TensorFlow's default: as many threads as cores."""
    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def _shape(proto: Any) -> tuple[int | None, ...] | None:
    if proto.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in proto.dim)


def _specs(tensor_map: Mapping[str, Any]) -> tuple[TensorSpecInfo, ...]:
    from tensorflow.core.framework import types_pb2

    return tuple(TensorSpecInfo(name, types_pb2.DataType.Name(info.dtype), _shape(info.tensor_shape))
                 for name, info in sorted(tensor_map.items()))


def read_signature_defs(path: Path) -> tuple[dict[str, SignatureInfo], dict[str, Any]]:
    """The serving MetaGraph's signatures as SignatureInfo, and as TF Serving's JSON."""
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    except OSError as err:
        raise ExportError(f"Cannot read {path / 'saved_model.pb'}: {err.strerror}.") from None
    except Exception as err:
        raise ExportError(f"{path / 'saved_model.pb'} is not a SavedModel: {err}.") from None
    graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags] or list(proto.meta_graphs)
    if not graphs:
        raise ExportError(f"{path} holds no MetaGraph; it is not a servable SavedModel.")
    defs = graphs[0].signature_def
    infos = {key: SignatureInfo(key, _specs(sig.inputs), _specs(sig.outputs), sig.method_name)
             for key, sig in defs.items() if key != INIT_OP_KEY}
    as_json = {key: json_format.MessageToDict(sig, preserving_proto_field_name=True,
                                              always_print_fields_with_no_presence=True)
               for key, sig in defs.items()}
    return infos, as_json


@dataclass
class Signature:
    """A runnable signature: its description plus the function that computes it."""

    info: SignatureInfo
    function: Any

    def run(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One model call (any thread). TensorFlow's InvalidArgument is the request's fault."""
        try:
            outputs = self.function(**{name: tf.constant(value) for name, value in tensors.items()})
        except tf.errors.InvalidArgumentError as err:
            raise bad_request(f"The model rejected the input: {err.message.splitlines()[0]}") from None
        except (TypeError, ValueError) as err:
            raise bad_request(f"The model rejected the input: {err}") from None
        return {name: value.numpy() for name, value in outputs.items()}


@dataclass
class LoadedModel:
    """One version of a model, loaded and ready to answer."""

    name: str
    version: int
    path: Path
    signatures: dict[str, Signature]
    signature_defs_json: dict[str, Any] = field(repr=False)
    handle: Any = field(repr=False, default=None)  # keeps the loaded object's variables alive

    def signature(self, key: str) -> Signature:
        sig = self.signatures.get(key)
        if sig is None:
            known = ", ".join(sorted(self.signatures)) or "none"
            raise bad_request(f"Model {self.name} version {self.version} has no signature "
                              f"{key!r}; its signatures: {known}.")
        return sig


def load(path: str | Path, name: str, version: int) -> LoadedModel:
    """Load one SavedModel directory (``.../<name>/<version>``)."""
    path = Path(path)
    infos, defs_json = read_signature_defs(path)
    try:
        handle = tf.saved_model.load(str(path), tags=["serve"])
    except Exception as err:
        raise ExportError(f"TensorFlow could not load {path}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}") from None
    signatures = {key: Signature(info, handle.signatures[key]) for key, info in infos.items()
                  if key in handle.signatures}
    return LoadedModel(name, version, path, signatures, defs_json, handle)


# -- one request, whatever the verb --------------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    """A request body decoded for one signature; :meth:`respond` encodes its outputs."""

    verb: str
    signature: Signature
    tensors: dict[str, np.ndarray]
    rows: int | None  # batchable rows, or None: run alone
    columnar: bool = False

    def respond(self, outputs: Mapping[str, np.ndarray]) -> bytes:
        if self.verb == "predict":
            return encode_predict(outputs, self.columnar)
        if self.verb == "classify":
            return encode_classify(outputs.get("classes"), outputs.get("scores"))
        return encode_regress(next(iter(outputs.values())))


def prepare(model: LoadedModel, verb: str, body: bytes | Mapping[str, Any]) -> Prepared:
    """Validate a request body against the model and turn it into tensors."""
    doc = parse_json(body) if isinstance(body, (bytes, bytearray)) else dict(body)
    if verb == "predict":
        sig = model.signature(signature_name(doc))
        request: PredictRequest = decode_predict(doc, sig.info)
        return Prepared(verb, sig, request.tensors, request.rows, request.columnar)
    examples: ExamplesRequest = decode_examples(doc, verb)
    sig = model.signature(examples.signature)
    able = sig.info.can_classify if verb == "classify" else sig.info.can_regress
    if not able:
        raise bad_request(_cannot(model, sig.info, verb))
    serialized = np.array([_example(features).SerializeToString()
                           for features in examples.examples], dtype=object)
    name = sig.info.inputs[0].name
    return Prepared(verb, sig, {name: serialized}, len(serialized) if sig.info.batchable else None)


def _cannot(model: LoadedModel, info: SignatureInfo, verb: str) -> str:
    need = ("outputs 'classes' and/or 'scores'" if verb == "classify" else "one output 'outputs'")
    able = [k for k, s in model.signatures.items()
            if (s.info.can_classify if verb == "classify" else s.info.can_regress)]
    hint = (f"This model's signatures that can: {', '.join(able)} (name one in "
            "'signature_name')." if able else
            f"None of this model's signatures can; use :predict, or save a signature for it "
            f"(tf.saved_model.save(..., signatures={{'{verb}': fn}}) with fn taking serialized "
            "tf.Example strings).")
    return (f"Signature {info.key!r} of model {model.name} cannot {verb}: it takes "
            f"{info.takes()}; :{verb} needs one DT_STRING input of serialized tf.Example and "
            f"{need}. {hint}")


def _example(features: Mapping[str, tuple[str, list[Any]]]) -> Any:
    feature = {}
    for name, (kind, values) in features.items():
        if kind == "int64":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        elif kind == "float":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def answer(model: LoadedModel, verb: str, body: bytes | Mapping[str, Any]) -> Any:
    """Answer one request synchronously, without batching: the contract check of export.
    Returns the response as parsed JSON; raises RequestError as the server would answer."""
    import json

    prepared = prepare(model, verb, body)
    return json.loads(prepared.respond(prepared.signature.run(prepared.tensors)))


__all__ = ["LoadedModel", "Signature", "Prepared", "load", "prepare", "answer",
           "read_signature_defs", "RequestError", "VERBS"]
