"""What both faces of the Open Inference Protocol (REST and gRPC) answer, written once:
server and model metadata, model readiness, and one inference through the server's batchers.

A v2 model has no signatures; cellship serves a model's ``serving_default`` signature (or
the one named by the request parameter ``signature_name``, cellship's extension), with the
signature's input and output names and its dtypes as v2 datatypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from cellship.serve.codec.signature import DEFAULT_SIGNATURE
from cellship.serve.errors import bad_request
from cellship.serve.openinference.tensors import check_inputs, describe

if TYPE_CHECKING:
    from cellship.serve.repository import VersionState
    from cellship.serve.server import ModelServer
    from cellship.serve.signatures import Signature

PLATFORM = "tensorflow_savedmodel"  # Triton's name for a TensorFlow SavedModel
EXTENSIONS = ["binary_tensor_data"]


def parse_version(text: str | None) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise bad_request(f"The model version must be a number, got {text!r}.")
    return int(text)


def server_metadata() -> dict[str, Any]:
    from cellship import __version__

    return {"name": "cellship", "version": __version__, "extensions": EXTENSIONS}


def _signature(state: VersionState, name: str, signature_name: str | None) -> Signature:
    model = state.loaded()
    key = signature_name or DEFAULT_SIGNATURE
    if key not in model.signatures and not signature_name and len(model.signatures) == 1:
        key = next(iter(model.signatures))
    return model.signature(key)


def model_metadata(server: ModelServer, name: str, version: str | None) -> dict[str, Any]:
    model = server.repository.model(name)
    state = model.resolve(parse_version(version))
    sig = _signature(state, name, None)
    return {"name": name, "versions": [str(v) for v in model.available()], "platform": PLATFORM,
            "inputs": [describe(s) for s in sig.info.inputs],
            "outputs": [describe(s) for s in sig.info.outputs]}


def model_ready(server: ModelServer, name: str, version: str | None) -> bool:
    """Whether the model (version) is AVAILABLE and the server is not draining; an
    unknown model is a 404, as in KServe and Triton."""
    model = server.repository.model(name)
    wanted = parse_version(version)
    available = model.available()
    return server.gate.ready and (wanted in available if wanted is not None else bool(available))


@dataclass(frozen=True)
class Inferred:
    version: int
    outputs: dict[str, np.ndarray]  # only those asked for, in the order asked


async def infer(server: ModelServer, name: str, version: str | None,
                inputs: Mapping[str, tuple[str, np.ndarray]], requested: list[str] | None,
                signature_name: str | None = None) -> Inferred:
    """One inference: inputs checked against the signature, run through the batcher
    the REST v1 path uses, outputs filtered to ``requested`` (None: all)."""
    state = server.repository.model(name).resolve(parse_version(version))
    sig = _signature(state, name, signature_name)
    checked = check_inputs(sig.info, inputs, name)
    if requested is not None:
        known = [o.name for o in sig.info.outputs]
        for wanted in requested:
            if wanted not in known:
                raise bad_request(f"Model {name} has no output {wanted!r}; its outputs: "
                                  f"{', '.join(known)}.")
    outputs = await server.run_signature(name, state, sig, checked.tensors, checked.rows)
    chosen = requested if requested is not None else [o.name for o in sig.info.outputs
                                                      if o.name in outputs] or list(outputs)
    return Inferred(state.version, {n: np.asarray(outputs[n]) for n in chosen})
