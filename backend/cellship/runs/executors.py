"""Where batch runs execute, by name: the registry of executors and the local one.

``local`` runs each run as a ``cellship.runs.runner`` process on this machine;
``kubernetes`` runs each as a batch/v1 Job with papermill in the image
(:mod:`cellship.runs.kubernetes.executor`). The interface is :class:`.executor_base.RunExecutor`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from cellship.plugins import Plugins
from cellship.runs.executor_base import RunExecutor
from cellship.store import RunRecord, Store

KILL_GRACE_SECONDS = 3.0


class LocalRunExecutor(RunExecutor):
    """Each run is a process of its own. From a single-threaded coordinator (the CLI, a
    detached coordinator) runs are forked from it after papermill is imported once, which
    saves each run an interpreter start and papermill's imports (~0.7 s, most of
    papermill's own per-run overhead); from a multi-threaded process (a kernel running
    ``%batch``) forking is unsafe, so runs are spawned as ``python -m cellship.runs.runner``.
    """

    name = "local"

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.processes: dict[tuple[str, int], int] = {}
        self.exited: dict[int, int] = {}
        self.use_fork = hasattr(os, "fork") and threading.active_count() == 1
        if self.use_fork:
            import nbformat  # noqa: F401 - imported once here, shared by every forked run
            import papermill  # noqa: F401

    def start(self, run: RunRecord) -> None:
        if self.use_fork:
            pid = self._fork(run)
        else:
            log = open(run.log_path, "ab")
            try:
                pid = subprocess.Popen(
                    [sys.executable, "-m", "cellship.runs.runner", str(self.store.path),
                     run.batch_id, str(run.index)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True).pid
            finally:
                log.close()
        self.store.update_run(run.batch_id, run.index, pid=pid)
        self.processes[(run.batch_id, run.index)] = pid

    def _fork(self, run: RunRecord) -> int:
        log_fd = os.open(run.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        pid = os.fork()
        if pid:
            os.close(log_fd)
            return pid
        code = 1
        try:  # the child: a new session, output to the run's log, then the run itself
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            from cellship.runs.runner import run as run_one

            code = run_one(Store(self.store.path), run.batch_id, run.index)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def _reap(self, pid: int) -> bool:
        """True once ``pid`` has exited (and is reaped)."""
        if pid in self.exited:
            return True
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            self.exited[pid] = -1
            return True
        if done:
            self.exited[pid] = status
            return True
        return False

    def running(self, run: RunRecord) -> bool:
        pid = self.processes.get((run.batch_id, run.index))
        return pid is not None and not self._reap(pid)

    def kill(self, run: RunRecord) -> None:
        """SIGTERM lets the runner stop papermill and kill its kernel; then SIGKILL the
        whole tree (runner, kernel, anything the kernel started)."""
        pid = self.processes.get((run.batch_id, run.index))
        if pid is None or self._reap(pid):
            return
        try:
            root = psutil.Process(pid)
            tree = [root] + root.children(recursive=True)
        except psutil.Error:
            tree = []  # gone already (or not ours to inspect): SIGTERM below settles it
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < end and not self._reap(pid):
            time.sleep(0.05)
        for process in tree:
            try:
                process.kill()
            except psutil.Error:  # exited meanwhile
                pass
        while not self._reap(pid):
            time.sleep(0.05)


# Where batch runs can execute: the built-ins plus the ``cellship.executors`` entry point
# group (cellship.plugins), as training backends are found. Classes are imported when first
# used, so a local batch never imports the Kubernetes client.
GROUP = "cellship.executors"
EXECUTORS: Plugins[RunExecutor] = Plugins(
    GROUP,
    {"local": "cellship.runs.executors:LocalRunExecutor",
     "kubernetes": "cellship.runs.kubernetes.executor:KubernetesRunExecutor"},
    base=RunExecutor,
    unknown="Batch runs cannot use the backend {name} yet; available: {available}.")

__all__ = ["EXECUTORS", "LocalRunExecutor", "RunExecutor", "get_executor"]


def get_executor(name: str, store: Store) -> RunExecutor:
    """A new executor of that name (a UsageError naming the available ones if none)."""
    return EXECUTORS.load(name)(store)
