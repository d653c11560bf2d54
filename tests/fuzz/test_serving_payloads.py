"""Serving REST payloads generated from each model's own signature (read from its
``/metadata``), sent to a real server on 127.0.0.1 with real SavedModels.

What must hold, for every body: never a 5xx, never a crash (the server answers
``/healthz`` after the run); a valid body is answered 200 with one output row per
instance, and for ``half_plus_three`` the values TF Serving would compute in float32
(NaN, ±Infinity and -0.0 included); every other body is a 400 ``{"error": sentence}``,
and when the body was a request whose tensor was wrong, the sentence names the input and
what was expected.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

tf = pytest.importorskip("tensorflow")

from cellship.serve.codec import SignatureInfo  # noqa: E402
from cellship.serve.server import BackgroundServer, ServingConfig  # noqa: E402
from tests.fuzz.budget import examples  # noqa: E402
from tests.fuzz.payloads import Body, check_sentence, predict_body  # noqa: E402
from tests.integration import serving_models as make  # noqa: E402

pytestmark = pytest.mark.serving

MODELS = ("half_plus_three", "multi", "strings")
TALLY: dict[str, dict[int, int]] = {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fuzz-served")
    make.half_plus_three(root / "half_plus_three" / "1")
    make.multi(root / "multi" / "1")
    make.strings(root / "strings" / "1")
    config = ServingConfig(port=0, max_body_bytes=2_000_000)
    with BackgroundServer({p.name: p for p in root.iterdir()}, config, log=lambda text: None) as server:
        server.wait_ready()
        yield server


def post(url: str, raw: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=raw, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def signature(base: str, model: str) -> SignatureInfo:
    with urllib.request.urlopen(f"{base}/v1/models/{model}/metadata", timeout=30) as response:
        meta = json.loads(response.read())
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]

    def specs(part: dict) -> tuple:
        from cellship.serve.codec import TensorSpecInfo

        out = []
        for name, info in part.items():
            shape = info["tensor_shape"]
            dims = None if shape.get("unknown_rank") else tuple(
                None if int(d["size"]) == -1 else int(d["size"]) for d in shape.get("dim", []))
            out.append(TensorSpecInfo(name, info["dtype"], dims))
        return tuple(sorted(out, key=lambda s: s.name))

    return SignatureInfo("serving_default", specs(sig["inputs"]), specs(sig["outputs"]))


@pytest.mark.parametrize("model", MODELS)
def test_generated_predict_bodies_get_200_or_a_400_that_says_why(served, model: str) -> None:
    base = served.url
    sig = signature(base, model)
    tally = TALLY.setdefault(model, {})

    @settings(max_examples=examples(80))
    @given(body=predict_body(sig))
    def one(body: Body) -> None:
        status, raw = post(f"{base}/v1/models/{model}:predict", body.raw)
        tally[status] = tally.get(status, 0) + 1
        assert status in (200, 400), (status, raw[:300], body)
        reply = json.loads(raw)
        if body.valid:
            assert status == 200, (reply, body.raw[:300])
            _check_values(model, body, reply)
        elif status == 400:
            assert set(reply) == {"error"}, reply
            check_sentence(reply["error"], sig.input_names, body)

    one()
    print(f"{model}: answers by status {tally}")
    with urllib.request.urlopen(f"{base}/healthz", timeout=30) as response:
        assert response.status == 200  # the server survived every body


def _check_values(model: str, body: Body, reply: dict[str, Any]) -> None:
    if model != "half_plus_three":
        return
    doc = json.loads(body.raw)
    x = np.asarray(doc.get("instances", doc.get("inputs")), dtype=np.float32)
    got = np.asarray(reply.get("predictions", reply.get("outputs")), dtype=np.float32)
    want = np.float32(0.5) * x + np.float32(3.0)
    np.testing.assert_array_equal(got, want)  # NaN == NaN here; -0.0 in gives 3.0 out
