"""The embedded local backend: the job's replicas are processes on this machine, watched
by a supervisor process (``cellship.train.local.supervisor``) that outlives the kernel."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import psutil

from cellship.errors import BackendError, MissingDependency, UsageError
from cellship.processes import pid_alive
from cellship.store import JobRecord
from cellship.train.backend import Backend
from cellship.train.spec import JobSpec
from cellship.watch.logstream import LogLine, follow_files
from cellship.watch.metrics import ScalarPoint

CANCEL_WAIT_SECONDS = 15.0

TENSORFLOW_HINT = ("pip install tensorflow-cpu (or tensorflow on a GPU machine), then "
                   "pip install --no-deps tf-keras")


def _is_our_process(pid: int | None, marker: str) -> bool:
    """Guard against pid reuse: the process's command line or environment names the job
    (the supervisor gets the id as an argument and in CELLSHIP_SUPERVISED_JOB)."""
    if pid is None or not pid_alive(pid):
        return False
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return False
    readers: tuple[Callable[[], Iterable[str]], ...] = (
        process.cmdline, lambda: (f"{k}={v}" for k, v in process.environ().items()))
    for read in readers:
        try:
            if any(marker in part for part in read()):
                return True
        except psutil.Error:  # gone meanwhile, or another user's: not ours to stop
            continue
    return False


class LocalBackend(Backend):
    name = "local"

    def check_ready(self, spec: JobSpec) -> None:
        if spec.gpus:
            from cellship.train.local.supervisor import visible_gpus

            computing = len([r for r in spec.replicas() if r.type != "ps"])
            have = len(visible_gpus())
            if spec.gpus * computing > have:
                raise UsageError(
                    f"--gpus {spec.gpus} asks for {spec.gpus * computing} GPU(s) in all "
                    f"({computing} replicas x {spec.gpus}) but this machine has {have}. "
                    "Drop --gpus to train on the CPU, or use a cluster with GPUs "
                    "(--backend kubernetes).")
        if importlib.util.find_spec("tensorflow") is None:
            raise MissingDependency(f"TensorFlow is not installed in this environment "
                                    f"({sys.executable}): {TENSORFLOW_HINT}.")
        legacy = spec.env.get("TF_USE_LEGACY_KERAS", "1") == "1"
        if legacy and importlib.util.find_spec("tf_keras") is None:
            raise MissingDependency(
                "tf_keras is not installed: cellship runs tf.keras on tf_keras so that "
                "model.fit works under MultiWorkerMirroredStrategy. Run "
                "`pip install --no-deps tf-keras` (same version as TensorFlow), or pass "
                "--env TF_USE_LEGACY_KERAS=0 to use Keras 3 with a custom training loop.")

    def _launch(self, job: JobRecord) -> None:
        log = open(Path(job.job_dir) / "supervisor.log", "ab")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cellship.train.local.supervisor", str(self.store.path), job.id],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=job.spec.get("cwd") or None,
                env=dict(os.environ, CELLSHIP_SUPERVISED_JOB=job.id))
        finally:
            log.close()
        self.store.update_job(job.id, supervisor_pid=proc.pid)
        _Reaper.adopt(proc)

    def refresh(self, job: JobRecord) -> JobRecord:
        _Reaper.reap()
        record = self.store.get_job(job.id)
        if record.done or record.supervisor_pid is None:
            return record
        if not pid_alive(record.supervisor_pid):
            # Give a supervisor that just finished a moment to have written its last state.
            time.sleep(0.2)
            record = self.store.get_job(job.id)
            if not record.done:
                self._kill_replicas(record)
                self.store.transition(record.id, "failed", ended=time.time(),
                                      error="the job's supervisor process disappeared "
                                            "(machine restart or kill); see supervisor.log")
                record = self.store.get_job(job.id)
        return record

    def logs(self, job: JobRecord, follow: bool = False, tf_noise: bool = False,
             on_idle: Callable[[], None] | None = None) -> Iterator[LogLine]:
        files = [(r.label, r.log_path) for r in job.replicas]
        return follow_files(files, lambda: self.refresh(job).done, follow=follow,
                            tf_noise=tf_noise, on_idle=on_idle)

    def metrics(self, job: JobRecord) -> list[ScalarPoint]:
        """Read the job's event files directly: complete even for scalars written before
        the relay started or by a job that ran without it."""
        try:
            from cellship.inside.eventfile import LogdirReader

            return LogdirReader(job.logdir).poll()
        except MissingDependency:
            return super().metrics(job)

    def cancel(self, job: JobRecord) -> JobRecord:
        record = self.refresh(job)
        if record.done:
            return record
        pid = record.supervisor_pid
        if _is_our_process(pid, record.id):
            os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
            end = time.monotonic() + CANCEL_WAIT_SECONDS
            while time.monotonic() < end:
                record = self.store.get_job(job.id)
                if record.done and not pid_alive(pid):
                    return record
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        record = self.store.get_job(job.id)
        self._kill_replicas(record)
        self.store.transition(job.id, "cancelled", ended=time.time(), error="cancelled by the user")
        final = self.store.get_job(job.id)
        if any(_is_our_process(r.pid, record.id) for r in final.replicas):
            raise BackendError(f"Job {record.name} ({record.id}) was cancelled but some of its "
                               "processes could not be stopped; see `cellship status`.")
        return final

    def _kill_replicas(self, record: JobRecord) -> None:
        """Last resort when the supervisor is gone: kill replica process groups directly."""
        for replica in record.replicas:
            if _is_our_process(replica.pid, record.id):
                try:
                    os.killpg(replica.pid, signal.SIGKILL)  # type: ignore[arg-type]
                except (ProcessLookupError, PermissionError):
                    pass
                self.store.update_replica(record.id, replica.type, replica.index, state="killed")


class _Reaper:
    """Keeps the supervisor Popen objects of this process and reaps them once they exit,
    so a long-lived kernel collects no zombies."""

    _children: list[subprocess.Popen] = []

    @classmethod
    def reap(cls) -> None:
        cls._children = [p for p in cls._children if p.poll() is None]

    @classmethod
    def adopt(cls, proc: subprocess.Popen) -> None:
        cls.reap()
        cls._children.append(proc)
