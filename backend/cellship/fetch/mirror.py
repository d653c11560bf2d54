"""A running job's TensorBoard logdir, kept fresh at home: every few seconds the new bytes
of its event files (from the pod, or from the bucket for an ``s3://`` logdir) are appended
to the local logdir, which TensorBoard reads as it grows
(``%job ID tensorboard``, ``cellship tensorboard JOB``). The inline curves do not need it:
they come through the metric relay in the log stream.

One mirror per job and process (a second ``start`` returns the first), a daemon thread
that stops when the job ends, when ``stop()`` is called, or with the process.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol, Sequence

from cellship.errors import CellshipError
from cellship.fetch.pull import Outcome, Root

INTERVAL_SECONDS = 2.0


class Pulls(Protocol):
    """What copies roots: :class:`~cellship.fetch.pull.Puller` (out of a pod) or a bucket
    reader (:class:`cellship.train.kubernetes.storage.StoragePuller`)."""

    def pull(self, roots: Sequence[Root]) -> Outcome: ...


class Mirror:
    def __init__(self, puller: Callable[[], tuple[Pulls, Root] | None],
                 done: Callable[[], bool], interval: float = INTERVAL_SECONDS) -> None:
        self._puller = puller
        self._done = done
        self.interval = interval
        self.stopped = threading.Event()
        self.rounds = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="cellship-mirror")

    def start(self) -> "Mirror":
        self._thread.start()
        return self

    def sync(self) -> None:
        """One round: copy the new bytes (errors are kept, not raised: the next round
        tries again, and the final fetch still copies everything)."""
        try:
            made = self._puller()
            if made is None:
                return
            puller, root = made
            puller.pull([root])
            self.last_error = None
        except CellshipError as err:
            self.last_error = str(err)
        self.rounds += 1

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                finished = self._done()
            except CellshipError:
                finished = False
            self.sync()
            if finished:
                break
            self.stopped.wait(self.interval)
        self.stopped.set()

    def stop(self) -> None:
        self.stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


_mirrors: dict[str, Mirror] = {}
_lock = threading.Lock()


def start(job_id: str, make: Callable[[], Mirror]) -> Mirror:
    """The running mirror of ``job_id`` in this process, made and started if none."""
    with _lock:
        mirror = _mirrors.get(job_id)
        if mirror is None or not mirror.alive:
            mirror = _mirrors[job_id] = make().start()
        return mirror


def for_job(job: Any) -> Mirror | None:
    """Keep a running cluster job's local logdir fresh in this process (``%job ID
    tensorboard``, ``cellship tensorboard JOB``); None for any other job, whose logdir is
    local already or final."""
    record = job.record
    if record.backend != "kubernetes" or record.done:
        return None
    from cellship.train.kubernetes.backend import KubernetesBackend

    return KubernetesBackend().mirror(record)
