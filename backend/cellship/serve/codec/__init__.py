"""JSON <-> numpy for TensorFlow Serving's REST API v1, without TensorFlow.

Why a package of its own: every rule a client can break lives here, so each bad request
is answered with one sentence that names the input, what the signature expects and what
arrived, and the rules are unit-tested without loading a model. The formats follow TF
Serving's ``json_tensor.cc``: ``instances`` -> ``predictions``, ``inputs`` -> ``outputs``,
``examples`` -> ``results``.

- :mod:`.signature`  what a signature takes and returns (names, TF dtypes, shapes)
- :mod:`.requests`   request bodies -> tensors, with the client-facing error sentences
- :mod:`.responses`  output tensors -> response bodies, written as TF Serving writes them

Rules: imports numpy, orjson and :mod:`cellship.serve.errors` only; never TensorFlow (the
CLI, the Jupyter server and the model repository import it cheaply).
"""

from __future__ import annotations

from cellship.serve.codec.requests import (
    ExamplesRequest,
    Feature,
    PredictRequest,
    decode_examples,
    decode_predict,
    parse_json,
    signature_name,
)
from cellship.serve.codec.responses import (
    dumps,
    encode_classify,
    encode_predict,
    encode_regress,
    error_body,
    output_value,
)
from cellship.serve.codec.signature import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    DTYPES,
    PREDICT_METHOD,
    REGRESS_METHOD,
    SignatureInfo,
    TensorSpecInfo,
    format_shape,
)

__all__ = ["CLASSIFY_METHOD", "DEFAULT_SIGNATURE", "DTYPES", "PREDICT_METHOD", "REGRESS_METHOD",
           "ExamplesRequest", "Feature", "PredictRequest", "SignatureInfo", "TensorSpecInfo",
           "decode_examples", "decode_predict", "dumps", "encode_classify", "encode_predict",
           "encode_regress", "error_body", "format_shape", "output_value", "parse_json",
           "signature_name"]
