"""The peers' model servers for benchmarks/peers/serving.py, each run in its own peer venv
(benchmarks/peers/setup.sh), never in the project's .venv:

    PEER_VENV/bin/python benchmarks/peers/servers.py {rayserve,kserve} MODEL_DIR PORT [GRPC_PORT]
    PEER_VENV/bin/bentoml serve bento_service:Digits --port PORT   (MODEL_DIR in $PEER_MODEL_DIR)

Each loads the same TF SavedModel (``MODEL_DIR/1``, serving_default signature) and answers
one 8x8 image per request in TF Serving's row format ``{"instances": [...]}``, the body the
load generator sends to `cellship serve`. Each uses its peer's own batching where it has
one, configured like `cellship serve`'s defaults (at most 64 rows per model call, no added
wait): Ray Serve's ``@serve.batch``; KServe's Python server has no batcher in-process (its
batcher is a Kubernetes sidecar), so each request is one model call there. BentoML's
service is in bento_service.py (``bentoml serve`` imports it by name).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
MAX_BATCH = 64


def load_signature(model_dir: str) -> tuple[Any, str]:
    """The SavedModel's serving_default function and its one input's name."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(Path(model_dir) / "1")).signatures["serving_default"]
    return serve, next(iter(serve.structured_input_signature[1]))


def run_rayserve(model_dir: str, port: int) -> None:
    """One replica with ``@serve.batch`` (max 64, a 1 ms wait: Ray's minimum useful window),
    behind Ray Serve's HTTP proxy, on a local Ray instance of 2 CPUs."""
    import asyncio

    import numpy as np
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})

    @serve.deployment(num_replicas=1, max_ongoing_requests=512, ray_actor_options={"num_cpus": 1})
    class Digits:
        def __init__(self, path: str) -> None:
            import tensorflow as tf

            self.tf = tf
            self.serve, self.input_name = load_signature(path)

        @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.001)
        async def predict(self, rows: list[np.ndarray]) -> list[list]:
            x = self.tf.constant(np.concatenate(rows).astype(np.float32))
            out = next(iter(self.serve(**{self.input_name: x}).values())).numpy()
            return [[row.tolist()] for row in out]

        async def __call__(self, request: Request) -> JSONResponse:
            rows = np.asarray((await request.json())["instances"], dtype=np.float32)
            return JSONResponse({"predictions": await self.predict(rows)})

    serve.run(Digits.bind(model_dir), name="digits", route_prefix="/", blocking=False)
    print(f"READY http://127.0.0.1:{port}", flush=True)
    asyncio.run(asyncio.Event().wait())


def run_kserve(model_dir: str, port: int, grpc_port: int) -> None:
    """kserve.ModelServer with one Model: REST v1 (``/v1/models/digits:predict``), REST v2
    and gRPC v2 (ModelInfer), one uvicorn worker."""
    import kserve
    import numpy as np
    from kserve import InferRequest, InferResponse
    from kserve.utils.utils import get_predict_input, get_predict_response

    class Digits(kserve.Model):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.load()

        def load(self) -> bool:
            import tensorflow as tf

            self.tf = tf
            self.serve, self.input_name = load_signature(model_dir)
            self.ready = True
            return self.ready

        def predict(self, payload: dict | InferRequest, headers: dict | None = None) -> dict | InferResponse:
            x = np.asarray(get_predict_input(payload), dtype=np.float32)
            out = next(iter(self.serve(**{self.input_name: self.tf.constant(x)}).values())).numpy()
            return get_predict_response(payload, out, self.name)

    kserve.ModelServer(http_port=port, grpc_port=grpc_port, workers=1,
                       enable_latency_logging=False).start([Digits("digits")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=("rayserve", "kserve"))
    parser.add_argument("model_dir")
    parser.add_argument("port", type=int)
    parser.add_argument("grpc_port", type=int, nargs="?", default=0)
    args = parser.parse_args()
    if args.peer == "rayserve":
        run_rayserve(args.model_dir, args.port)
    else:
        if not args.grpc_port:
            sys.exit("servers.py: kserve needs GRPC_PORT")
        run_kserve(args.model_dir, args.port, args.grpc_port)


if __name__ == "__main__":
    main()
