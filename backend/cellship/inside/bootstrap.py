"""The first lines every replica runs, before the user's code.

Kept apart from :mod:`cellship.job` (the helpers users call) because it does the
plumbing users should never see: making the notebook's directory importable, loading
values shipped by cloudpickle, turning ParameterServerStrategy's ``worker``/``ps`` replicas
into plain TensorFlow servers, and telling the supervisor when this replica waits for and
joins its peers (so a peer that never comes up fails the job instead of hanging it).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
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
        cls.__init__ = __init__


class MetricsRelay(threading.Thread):
    """Copies every scalar the job writes to its logdir into the log stream, one
    ``RELAY_MARK`` line per point, so the notebook gets live curves wherever the job runs
    (on Kubernetes the kernel cannot read the job's files, but it can read its logs).

    Runs only in the chief, the replica whose summaries land in the logdir. Writes go
    straight to file descriptor 1 in one ``write`` per batch, each line fenced by newlines,
    so they never split a line the user's code is printing.
    """

    def __init__(self, logdir: str, interval: float = 0.25) -> None:
        super().__init__(name="cellship-metrics-relay", daemon=True)
        from cellship.inside.eventfile import LogdirReader

        self.reader = LogdirReader(logdir)
        self.interval = interval
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def scan(self) -> None:
        from cellship.inside.relay import encode_relay

        with self.lock:
            points = self.reader.poll()
            if not points:
                return
            lines = [encode_relay(p) for p in points]
            chunk: list[str] = []
            for line in lines:  # chunks under PIPE_BUF stay atomic on a pipe too
                if chunk and sum(len(c) + 1 for c in chunk) + len(line) > 3500:
                    self._write(chunk)
                    chunk = []
                chunk.append(line)
            self._write(chunk)

    @staticmethod
    def _write(lines: list[str]) -> None:
        os.write(1, ("\n" + "\n".join(lines) + "\n").encode("utf-8"))

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.scan()
            except Exception as err:
                print(f"cellship: metrics relay stopped: {type(err).__name__}: {err}",
                      file=sys.stderr, flush=True)
                return

    def close(self) -> None:
        """Last scan at exit, after the user's code (and its summary writers) finished."""
        self.stopping.set()
        try:
            self.scan()
        except Exception:
            pass


def _start_relay(config: dict) -> None:
    logdir = os.environ.get("CELLSHIP_LOGDIR")
    if not logdir or os.environ.get("CELLSHIP_METRICS_RELAY", "1") != "1":
        return
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    chief = (task.get("type") == "chief") if "chief" in cluster else (
        task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0)
    if not chief:
        return
    try:
        relay = MetricsRelay(logdir)
    except ImportError:
        return  # no tensorboard protos here: TensorBoard itself can still read the logdir
    relay.start()
    # Registered before TensorFlow is imported, so it runs after TensorFlow's own exit
    # handlers (atexit is last-in, first-out) and sees the final flushed summaries.
    atexit.register(relay.close)


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
    _start_relay(config)
    if shipped:
        _load_shipped(namespace)
    if "ps" in cluster and task_type in ("worker", "ps"):
        _serve_forever()
    if replicas > 1:
        _hook_strategies()
