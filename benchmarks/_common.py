"""Shared bits of the benchmark scripts (not a test: run them by hand, see README.md)."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# One training program for every variant: MultiWorkerMirrored on scikit-learn's digits. It
# prints the wall-clock time of its first training step, which is what the goals measure.
TRAIN_PROGRAM = '''
import time
import tensorflow as tf
from sklearn.datasets import load_digits

strategy = tf.distribute.MultiWorkerMirroredStrategy()
images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
dataset = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(64)


class FirstStep(tf.keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            print(f"FIRST_STEP {time.time():.6f}", flush=True)


with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0, callbacks=[FirstStep()])
'''


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{platform.machine()}, {cpus} cores{mem}, Python {platform.python_version()}"


def isolated_home() -> Path:
    """Benchmarks never touch the user's job store."""
    home = Path(tempfile.mkdtemp(prefix="cellship-bench-"))
    os.environ["CELLSHIP_HOME"] = str(home)
    return home


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def bench_cluster(namespace: str = "bench") -> Iterator[tuple[Any, str]]:
    """The k8s tier's test cluster, booted for a benchmark: the training image imported,
    KUBECONFIG pointing at it and ``namespace`` ready for pods (its default ServiceAccount
    exists). Yields the cluster and the image's name; the cluster stops on exit."""
    from tests.cluster.harness import LocalCluster, build_binaries
    from tests.cluster.image import training_image_archive

    archive, image = training_image_archive()
    cluster = LocalCluster(build_binaries())
    with cluster:
        cluster.import_image(archive, image)
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        cluster.kubectl("create", "namespace", namespace)
        while cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode:
            time.sleep(0.2)
        yield cluster, image
