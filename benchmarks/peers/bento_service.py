"""BentoML peer for benchmarks/peers/serving.py: the same SavedModel behind BentoML's adaptive
batching (``@bentoml.api(batchable=True)``), started by the benchmark as

    PEER_MODEL_DIR=DIR BENTOML_HOME=TMP bentoml serve bento_service:Digits --port PORT

in the BentoML peer venv. The request body is TF Serving's ``{"instances": [[...]]}`` (the
API's argument is named ``instances``), POSTed to ``/predict``; batches are at most 64 rows,
as `cellship serve`'s default. One worker: the machine this runs on has 2 cores.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@bentoml.service(workers=1, traffic={"timeout": 30, "max_concurrency": 1024})
class Digits:
    def __init__(self) -> None:
        import tensorflow as tf
        from servers import load_signature

        self.tf = tf
        self.serve, self.input_name = load_signature(os.environ["PEER_MODEL_DIR"])

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=64, max_latency_ms=1000)
    def predict(self, instances: np.ndarray) -> np.ndarray:
        x = self.tf.constant(instances.astype(np.float32))
        return next(iter(self.serve(**{self.input_name: x}).values())).numpy()
