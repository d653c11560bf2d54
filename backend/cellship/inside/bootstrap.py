"""The first lines every replica runs, before the user's code.

Kept apart from :mod:`cellship.job` (the helpers users call) because it does the
plumbing users should never see: making the notebook's directory importable, loading
values shipped by cloudpickle, turning ParameterServerStrategy's ``worker``/``ps`` replicas
into plain TensorFlow servers, and telling the supervisor when this replica waits for and
joins its peers (so a peer that never comes up fails the job instead of hanging it).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, MutableMapping

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


# -- training progress -----------------------------------------------------------------
PROGRESS_INTERVAL = 0.25  # seconds between two progress events of one replica


def _emit_event(kind: str, **fields: Any) -> None:
    """One event line on fd 1, fenced by newlines (see :class:`MetricsRelay`)."""
    from cellship.inside.relay import encode_event

    os.write(1, ("\n" + encode_event(kind, **fields) + "\n").encode("utf-8"))


def _floats(logs: Any) -> dict[str, float]:
    """Keras's logs as plain floats (they may be numpy or tensor scalars); others dropped."""
    out: dict[str, float] = {}
    for key, value in dict(logs or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def progress_callback(base: type) -> Any:
    """A Keras callback (subclass of ``base``: Keras 3's or tf_keras's ``Callback``) that
    sends structured progress through the log stream: where in which epoch this replica
    is, and the batch and epoch logs. The notebook's progress bars and live curves are
    built from these events, never from parsing Keras's text."""

    class CellshipProgress(base):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.last = 0.0

        def _params(self) -> tuple[Any, Any]:
            params = getattr(self, "params", None) or {}
            return params.get("epochs"), params.get("steps")

        def on_train_begin(self, logs: Any = None) -> None:
            epochs, steps = self._params()
            _emit_event("train_begin", epochs=epochs, steps=steps, t=time.time())

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = int(epoch) + 1
            epochs, steps = self._params()
            self.last = time.monotonic()
            _emit_event("epoch_begin", epoch=self.epoch, epochs=epochs, steps=steps, step=0,
                        t=time.time())

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            epochs, steps = self._params()
            now = time.monotonic()
            if now - self.last < PROGRESS_INTERVAL and (steps is None or batch + 1 < steps):
                return
            self.last = now
            _emit_event("progress", epoch=self.epoch, epochs=epochs, steps=steps,
                        step=int(batch) + 1, t=time.time(), logs=_floats(logs))

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            epochs, steps = self._params()
            _emit_event("epoch_end", epoch=int(epoch) + 1, epochs=epochs, steps=steps,
                        t=time.time(), logs=_floats(logs))

        def on_train_end(self, logs: Any = None) -> None:
            _emit_event("train_end", epoch=self.epoch, t=time.time())

    return CellshipProgress


def epoch_progress_callback(progress_class: type, base: type) -> Any:
    """The progress callback without its batch hook, for ParameterServerStrategy: Keras
    refuses batch-level callbacks there (steps run asynchronously on the workers). The base
    class's own no-op hook is put back, which Keras recognises as "not implemented"."""

    class CellshipEpochProgress(progress_class):
        on_train_batch_end = base.on_train_batch_end  # type: ignore[attr-defined]

    return CellshipEpochProgress


def _parameter_server(model: Any) -> bool:
    strategy = getattr(model, "distribute_strategy", None)
    return type(strategy).__name__.startswith("ParameterServerStrategy")


def _patch_fit(model_class: type, callback_base: type) -> None:
    """Add the progress callback to every ``fit``; print one line per epoch (``verbose=2``)
    unless the user chose a verbosity: the per-batch bar is the notebook view's job now,
    and a half-drawn bar would be cut into a log line by every event line."""
    import functools

    original = model_class.fit  # type: ignore[attr-defined]
    if getattr(original, "_cellship_hooked", False):
        return
    callback_class = progress_callback(callback_base)
    epoch_class = epoch_progress_callback(callback_class, callback_base)

    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) <= 4:  # callbacks is fit's 6th parameter: positional ones are left alone
            callbacks = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, callback_class) for c in callbacks):
                callbacks.append(epoch_class() if _parameter_server(self) else callback_class())
            kwargs["callbacks"] = callbacks
            kwargs.setdefault("verbose", 2)
        return original(self, *args, **kwargs)

    fit._cellship_hooked = True  # type: ignore[attr-defined]
    model_class.fit = fit  # type: ignore[attr-defined]


def _patch_keras(module: Any) -> None:
    """``keras`` (Keras 3) or ``tf_keras`` was imported: hook its Model.fit."""
    try:
        _patch_fit(module.Model, module.callbacks.Callback)
    except AttributeError as err:  # an unexpected Keras layout: no progress, training unharmed
        print(f"cellship: no training progress from {module.__name__}: {err}",
              file=sys.stderr, flush=True)


class _AfterImport:
    """A ``sys.meta_path`` finder that runs a hook right after a module is first imported,
    so Keras is hooked without the bootstrap importing it (TensorFlow takes seconds to
    import, and the user's cell may choose Keras's backend before it does)."""

    def __init__(self, hooks: dict[str, Callable[[Any], None]]) -> None:
        self.hooks = hooks
        self.busy: set[str] = set()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.hooks or name in self.busy:
            return None
        self.busy.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy.discard(name)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _HookedLoader(spec.loader, self.hooks[name])  # type: ignore[assignment]
        return spec


class _HookedLoader:
    """Wraps a module's loader: execute the module, then the hook; anything else a loader
    answers (resources, source) is the wrapped loader's."""

    def __init__(self, loader: Any, hook: Callable[[Any], None]) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        self._hook(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _hook_keras() -> None:
    if os.environ.get("CELLSHIP_PROGRESS", "1") != "1":
        return
    hooks = {"keras": _patch_keras, "tf_keras": _patch_keras}
    for name in list(hooks):
        if name in sys.modules:
            _patch_keras(sys.modules[name])
            del hooks[name]
    if hooks:
        sys.meta_path.insert(0, _AfterImport(hooks))  # type: ignore[arg-type]


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


def _end_on_sigterm() -> None:
    """End at once on SIGTERM when this process is its container's PID 1 (a pod's program,
    exec'd by the pod bootstrap). PID 1 ignores a signal it does not handle, so a deleted
    pod would sit out its whole grace period before the kubelet's SIGKILL, and a replica
    that cellship must make again would wait that long. A Python handler would not run
    while the main thread waits in TensorFlow's C++ (a collective waiting for a lost peer),
    so SIGTERM is blocked here, before TensorFlow starts its threads (they inherit the
    mask), and one thread waits for it and ends the process."""
    if os.getpid() != 1:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        signal.sigwait({signal.SIGTERM})
        print("cellship: SIGTERM (the pod is being deleted): stopping now", flush=True)
        sys.stderr.flush()
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=wait, daemon=True, name="cellship-sigterm").start()


def start(namespace: MutableMapping[str, Any], shipped: bool = False) -> None:
    """Prepare this replica; called by the generated program before the user's code."""
    _end_on_sigterm()
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
    _hook_keras()
    if shipped:
        _load_shipped(namespace)
    if "ps" in cluster and task_type in ("worker", "ps"):
        _serve_forever()
    if replicas > 1:
        _hook_strategies()
