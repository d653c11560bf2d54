"""BackupAndRestore for replicas that do not share a filesystem (Kubernetes pods).

Keras' ``BackupAndRestore`` assumes every worker of a MultiWorkerMirrored cluster reads the
chief's checkpoint from one shared directory: only the chief writes ``backup/chief``,
the others write a temporary copy and delete it. On the local backend that holds (the
replicas share the job dir). A cluster job's pods each have their own emptyDir, so there
a restarted worker would find no checkpoint, start at epoch 0 with its initial weights
while the chief resumes at epoch N, and the cluster would train on diverged weights or
hang on unequal step counts. A replica whose pod was lost and recreated (deleted pod,
lost node, eviction) starts with an empty dir altogether.

So in pods (``CELLSHIP_PRIVATE_JOB_DIR=1``, set by the Kubernetes backend) each worker
keeps its own copy of the checkpoint (their variables are mirrored, so the copies are the
same), and at the start of ``fit`` the workers agree through TensorFlow's own collectives:
each says which epoch its copy holds (an all-reduce), the freshest copy wins (lowest worker
on a tie), and if not everyone holds that epoch, every variable the checkpoint tracks
(model weights, optimizer slots and step, the saved epoch and batch) is sent from that
worker to all (an all-reduce where only it contributes non-zero values: exact, since
``x + 0 == x``). Every worker makes the same collective calls in the same order, because
each decision is taken on the all-reduced values all of them hold. The result: a recreated
replica resumes from its peers' last epoch without any file copied into its pod.
"""

from __future__ import annotations

import os
from typing import Any

PRIVATE_ENV = "CELLSHIP_PRIVATE_JOB_DIR"
NO_CHECKPOINT = -1

_class: Any = None


def private_job_dir(environ: Any = None) -> bool:
    """True where each replica's job dir is its own (a pod's emptyDir)."""
    return (os.environ if environ is None else environ).get(PRIVATE_ENV) == "1"


def freshest(epochs: list[int]) -> int | None:
    """The worker whose copy should be adopted by all, or None when nothing is to be done
    (no copy anywhere, or every worker holds the same epoch). Ties: the lowest worker."""
    best = max(epochs)
    if best == NO_CHECKPOINT or all(e == best for e in epochs):
        return None
    return epochs.index(best)


def _tracked_variables(model: Any, state: Any) -> list[Any]:
    """What the backup's checkpoint holds: the model's weights, the optimizer's variables
    (slots and iterations), the saved epoch and batch, the train counter."""
    found: list[Any] = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables = optimizer.variables
        found += list(variables() if callable(variables) else variables)
    found += [state._ckpt_saved_epoch, state._ckpt_saved_batch, model._train_counter]
    unique: dict[int, Any] = {}
    for variable in found:
        unique.setdefault(id(variable), variable)
    return list(unique.values())


def agree_on_freshest(model: Any, state: Any) -> None:
    """Make every worker hold the freshest checkpointed state (see the module docstring)."""
    import tensorflow as tf

    strategy = model.distribute_strategy
    workers = strategy.num_replicas_in_sync
    if workers < 2:
        return
    # Restoring a checkpoint creates its save counter, a mirrored variable whose creation
    # is itself a collective (the chief broadcasts the initial value): a worker that had
    # nothing to restore creates it here, so every worker has made the same collective
    # calls before the next one.
    state.read_checkpoint_manager._checkpoint.save_counter  # noqa: B018
    own = int(state._ckpt_saved_epoch.numpy())
    sum_op = tf.distribute.ReduceOp.SUM

    def each_epoch() -> Any:
        context = tf.distribute.get_replica_context()
        mine = tf.one_hot(context.replica_id_in_sync_group, workers, dtype=tf.int64)
        return context.all_reduce(sum_op, mine * (own - NO_CHECKPOINT))

    said = strategy.experimental_local_results(strategy.run(each_epoch))[0].numpy()
    epochs = [int(value) + NO_CHECKPOINT for value in said]
    donor = freshest(epochs)
    if donor is None:
        return
    variables = _tracked_variables(model, state)

    def from_donor() -> Any:
        context = tf.distribute.get_replica_context()
        giving = tf.equal(context.replica_id_in_sync_group, donor)
        masked = [tf.where(giving, v.read_value(), tf.zeros_like(v.read_value()))
                  for v in variables]
        return context.all_reduce(sum_op, masked)

    values = strategy.experimental_local_results(strategy.run(from_donor))[0]
    for variable, value in zip(variables, values):
        variable.assign(value)
    if own != epochs[donor]:
        held = f"epoch {own + 1}" if own != NO_CHECKPOINT else "no backup"
        print(f"cellship: this worker's own backup held {held}; resuming from worker "
              f"{donor}'s, after epoch {epochs[donor] + 1}", flush=True)


def pod_backup_class() -> Any:
    """The ``BackupAndRestore`` subclass for private job dirs (built on first use: it needs
    TensorFlow, which this module must not import at import time)."""
    global _class
    if _class is None:
        import tensorflow as tf

        class PodBackupAndRestore(tf.keras.callbacks.BackupAndRestore):
            """Each worker writes its own ``backup/chief``; at the start of ``fit`` the
            workers adopt the freshest copy among them."""

            def on_train_begin(self, logs: Any = None) -> None:
                super().on_train_begin(logs)
                state = self._training_state
                state.write_checkpoint_manager = state.read_checkpoint_manager
                agree_on_freshest(self.model, state)

            def _backup(self, epoch: int, batch: int = 0) -> None:
                # Not the parent's back_up(): it deletes a non-chief's temporary dir,
                # which here is this worker's own (and only) copy.
                self._training_state.write_checkpoint_manager.save()

        _class = PodBackupAndRestore
    return _class
