"""The first lines every replica runs, before the user's code.

Kept apart from :mod:`cellship.job` (the helpers users call) because it does the
plumbing users should never see: making the notebook's directory importable, loading
values shipped by cloudpickle, turning ParameterServerStrategy's ``worker``/``ps`` replicas
into plain TensorFlow servers, and telling the supervisor when this replica waits for and
joins its peers (so a peer that never comes up fails the job instead of hanging it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, MutableMapping

SHIPPED_FILE = "shipped.pkl"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def marker_dir() -> Path | None:
    job_dir = _env("CELLSHIP_JOB_DIR")
    if not job_dir:
        return None
    return Path(job_dir) / "state" / f"attempt-{_env('CELLSHIP_ATTEMPT', '0')}"


def report(event: str) -> None:
    """Leave a marker the supervisor polls: ``state/attempt-N/<type>-<index>.<event>``."""
    directory = marker_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    key = f"{_env('CELLSHIP_TASK_TYPE', 'worker')}-{_env('CELLSHIP_TASK_INDEX', '0')}"
    (directory / f"{key}.{event}").write_text(str(time.time()))


def _load_shipped(namespace: MutableMapping[str, Any]) -> None:
    import cloudpickle

    path = Path(_env("CELLSHIP_JOB_DIR", ".")) / SHIPPED_FILE
    with open(path, "rb") as handle:
        values = cloudpickle.load(handle)
    namespace.update(values)


def _hook_strategies() -> None:
    """Report when a distribution strategy starts waiting for peers, and when it joined."""
    import tensorflow as tf

    classes = {tf.distribute.MultiWorkerMirroredStrategy,
               tf.distribute.experimental.MultiWorkerMirroredStrategy,
               tf.distribute.experimental.ParameterServerStrategy}
    for cls in classes:
        original = cls.__init__
        if getattr(original, "_cellship_hooked", False):
            continue

        def __init__(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> None:
            report("connecting")
            __original(self, *args, **kwargs)
            report("connected")

        __init__._cellship_hooked = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]


def _serve_forever() -> None:
    """A ParameterServerStrategy ``worker`` or ``ps`` replica: a TF server, nothing else.

    The chief drives training through ClusterCoordinator; these replicas only host
    variables and run the functions the chief schedules, so the cell is not run here.
    """
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id, protocol="grpc", start=True)
    print(f"cellship: {resolver.task_type} {resolver.task_id} serving at "
          f"{resolver.cluster_spec().task_address(resolver.task_type, resolver.task_id)}",
          flush=True)
    report("connected")
    server.join()
    sys.exit(0)


def start(namespace: MutableMapping[str, Any], shipped: bool = False) -> None:
    """Prepare this replica; called by the generated program before the user's code."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        try:
            import tf_keras  # noqa: F401
        except ImportError:
            sys.exit("cellship: TF_USE_LEGACY_KERAS=1 but tf_keras is not installed in this "
                     "environment: run `pip install --no-deps tf-keras` (matching your "
                     "TensorFlow version), or pass --env TF_USE_LEGACY_KERAS=0 for Keras 3.")
    config = json.loads(_env("TF_CONFIG", "{}") or "{}")
    cluster = config.get("cluster", {})
    task_type = config.get("task", {}).get("type", "worker")
    replicas = sum(len(v) for v in cluster.values())
    report("started")
    if shipped:
        _load_shipped(namespace)
    if "ps" in cluster and task_type in ("worker", "ps"):
        _serve_forever()
    if replicas > 1:
        _hook_strategies()
