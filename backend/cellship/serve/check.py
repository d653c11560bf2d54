"""``python -m cellship.serve.check SAVED_MODEL [--example request.json]``: the contract
check of ``cellship export``.

It loads the SavedModel exactly as the server will, insists on a ``serving_default``
signature whose inputs JSON can carry, and, given an example request, answers it through
the server's own decode -> run -> encode path: if this passes, ``cellship serve`` answers
that request too. Prints one JSON line: the signatures (and the example's answer), or
``{"error": ...}``. A subprocess, so that exporting never loads TensorFlow into the
caller (the CLI, a Jupyter server).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from cellship.errors import CellshipError, ExportError
from cellship.serve.codec.signature import DEFAULT_SIGNATURE, DTYPES
from cellship.serve.errors import RequestError


def _verb_of(example: Mapping[str, Any], model: Any) -> str:
    if "examples" in example:
        sig = model.signatures.get(example.get("signature_name") or DEFAULT_SIGNATURE)
        return "regress" if sig is not None and sig.info.can_regress else "classify"
    return "predict"


def check(path: str | Path, example: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from cellship.serve import signatures

    path = Path(path)
    model = signatures.load(path, "export-check", 0)
    default = model.signatures.get(DEFAULT_SIGNATURE)
    if default is None:
        have = ", ".join(sorted(model.signatures)) or "none"
        raise ExportError(
            f"{path} has no '{DEFAULT_SIGNATURE}' signature (it has: {have}); TF Serving clients "
            "call that one unless they name another. Save the model with "
            "model.save(path, save_format='tf') (tf.keras), model.export(path) (Keras 3) or "
            "tf.saved_model.save(model, path, signatures={'serving_default': fn}).")
    for spec in default.info.inputs:
        if spec.dtype not in DTYPES:
            raise ExportError(f"Input {spec.describe()} of {path} has a dtype that JSON requests "
                              "cannot carry; serve a signature with numeric, bool or string inputs.")
    result: dict[str, Any] = {"signatures": {k: s.info.to_dict() for k, s in model.signatures.items()}}
    if example is not None:
        verb = _verb_of(example, model)
        try:
            response = signatures.answer(model, verb, example)
        except RequestError as err:
            raise ExportError(f"The model does not answer the example request: a server would "
                              f"reply {err.status} {{\"error\": {str(err)!r}}}. Nothing was "
                              "stored; fix the model or the example.") from None
        result["example"] = {"verb": verb, "response": response}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellship.serve.check")
    parser.add_argument("saved_model")
    parser.add_argument("--example", default=None)
    args = parser.parse_args(argv)
    try:
        example = None
        if args.example:
            example = json.loads(Path(args.example).read_text())
        print(json.dumps(check(args.saved_model, example)), flush=True)
        return 0
    except CellshipError as err:
        print(json.dumps({"error": str(err)}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
