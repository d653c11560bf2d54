"""Helpers for code running INSIDE a job (``import cellship`` then ``cellship.job.X()``).

They read the replica's TF_CONFIG and the CELLSHIP_* variables the backend sets, and fall
back to single-process defaults outside a job, so the very same cell also runs unchanged
as ordinary notebook code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cellship.errors import UsageError

_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _tf_config() -> dict[str, Any]:
    try:
        return json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError:
        return {}


def in_job() -> bool:
    """True inside a replica started by cellship."""
    return bool(os.environ.get("CELLSHIP_JOB_ID"))


def job_id() -> str | None:
    return os.environ.get("CELLSHIP_JOB_ID")


def task_type() -> str:
    """``worker``, ``chief`` or ``ps`` (``worker`` outside a job)."""
    return _tf_config().get("task", {}).get("type", "worker")


def task_index() -> int:
    return int(_tf_config().get("task", {}).get("index", 0))


def num_workers() -> int:
    """Workers that compute gradients (the chief of a ParameterServer job not counted)."""
    return max(len(_tf_config().get("cluster", {}).get("worker", [])), 1)


def is_chief() -> bool:
    """The replica that owns checkpoints, summaries and the saved model.

    ParameterServerStrategy has an explicit ``chief``; MultiWorkerMirroredStrategy
    makes ``worker 0`` the chief when the cluster has no ``chief`` entry.
    """
    cluster = _tf_config().get("cluster", {})
    if "chief" in cluster:
        return task_type() == "chief"
    return task_type() == "worker" and task_index() == 0


def _local_root() -> Path:
    return Path(os.environ.get("CELLSHIP_LOCAL_OUTPUT", "cellship-output"))


def job_dir() -> Path:
    """The job's own directory (shared by its replicas on the local backend)."""
    path = Path(os.environ.get("CELLSHIP_JOB_DIR") or _local_root())
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_dir() -> Path:
    """Where the job's results go (saved models, files the user writes)."""
    path = Path(os.environ.get("CELLSHIP_OUTPUT_DIR") or _local_root() / "output")
    path.mkdir(parents=True, exist_ok=True)
    return path


def logdir() -> Path:
    """The job's TensorBoard log directory."""
    path = Path(os.environ.get("CELLSHIP_LOGDIR") or _local_root() / "logs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def backup_dir() -> Path:
    """Where BackupAndRestore keeps its state; stable across restarts of the same job."""
    return job_dir() / "backup"


_flushing_tensorboard_class: Any = None


def _flushing_tensorboard() -> Any:
    """A TensorBoard callback class that flushes its writers as soon as it has written.

    Keras's own callback leaves scalars in the writer's queue (flushed every 120 s or 10
    events), so live curves would lag by minutes; flushing after each epoch (and, with
    ``update_freq="batch"``, at most every half second) makes them arrive at once.
    """
    global _flushing_tensorboard_class
    if _flushing_tensorboard_class is None:
        import time

        import tensorflow as tf

        class FlushingTensorBoard(tf.keras.callbacks.TensorBoard):
            _last_flush = 0.0

            def _flush(self) -> None:
                for writer in getattr(self, "_writers", {}).values():
                    writer.flush()
                self._last_flush = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                super().on_epoch_end(epoch, logs)
                self._flush()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                super().on_train_batch_end(batch, logs)
                if self.update_freq != "epoch" and time.monotonic() - self._last_flush > 0.5:
                    self._flush()

        _flushing_tensorboard_class = FlushingTensorBoard
    return _flushing_tensorboard_class


def tensorboard(**kwargs: Any) -> Any:
    """A Keras TensorBoard callback writing to :func:`logdir`, flushed after every epoch
    so the notebook's live curves and TensorBoard see each point as soon as it exists.

    ``update_freq="epoch"`` by default: Keras 3 drops epoch scalars for an integer
    update_freq. Under MultiWorkerMirroredStrategy, Keras writes non-chief summaries to a
    temporary directory and removes it, so only the chief's curves land in the logdir.
    """
    kwargs.setdefault("update_freq", "epoch")
    kwargs.setdefault("log_dir", str(logdir()))
    return _flushing_tensorboard()(**kwargs)


def backup(**kwargs: Any) -> Any:
    """A Keras BackupAndRestore callback in the job's directory.

    After a restart (``--max-restarts``), ``fit`` resumes from the last finished epoch
    instead of epoch 0. The backup is deleted by Keras when training completes. In a
    cluster job's pods, whose job dirs are not shared, each worker keeps its own copy
    and the workers adopt the freshest one at the start of ``fit``
    (:mod:`cellship.inside.backups`), so a replica recreated on another node resumes too.
    """
    import tensorflow as tf

    from cellship.inside import backups

    kwargs.setdefault("backup_dir", str(backup_dir()))
    if backups.private_job_dir():
        return backups.pod_backup_class()(**kwargs)
    return tf.keras.callbacks.BackupAndRestore(**kwargs)


def _save_model(model: Any, path: Path) -> None:
    module = type(model).__module__
    if module.startswith("keras") and hasattr(model, "export"):
        model.export(str(path))  # Keras 3: a serving SavedModel
    else:
        model.save(str(path), save_format="tf")  # tf.keras / tf_keras: SavedModel


def save(model: Any, name: str) -> Path | None:
    """Save ``model`` as a SavedModel named ``name`` under :func:`output_dir`.

    Every replica must call this: under MultiWorkerMirroredStrategy saving runs
    collectives, and if only the chief saved the workers would pair up wrongly and the job
    would abort. Non-chief replicas save to a temporary directory that is then deleted.
    Returns the path on the chief, None elsewhere.
    """
    if not _MODEL_NAME_RE.match(name):
        raise UsageError(f"save(model, {name!r}): the name must be 1-128 letters, digits, "
                         "'-', '_' or '.', starting with a letter or digit (e.g. 'digits').")
    if is_chief():
        target = output_dir() / name
        if target.exists():
            shutil.rmtree(target)
        _save_model(model, target)
        print(f"cellship: saved model {name!r} to {target}", flush=True)
        return target
    scratch = Path(tempfile.mkdtemp(prefix=f"cellship-{task_type()}-{task_index()}-"))
    try:
        _save_model(model, scratch / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None
