"""Process helpers of the test cluster: the one-cluster-per-machine lock, and stopping the
programs it started (process groups: a component's children go with it)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping

LOCK_FILE = "/run/cellship-test-cluster.lock"


class ClusterError(RuntimeError):
    """The test cluster could not boot; the message names the component and its log."""


def machine_lock(timeout: float = 1800.0) -> Any:
    """One test cluster per machine: they share the bridge, the DNS address and the
    kubelet's fixed directories. A second session waits (its pytest timeout still
    applies) instead of breaking both."""
    handle = open(LOCK_FILE, "w")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError as err:
            if time.monotonic() > deadline:
                handle.close()
                raise ClusterError(f"another test cluster has held {LOCK_FILE} for "
                                   f"{timeout:g}s; stop it first") from err
            time.sleep(1)


def pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def terminate(process: subprocess.Popen, grace: float = 10.0) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except OSError:
            process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                process.kill()
            process.wait(timeout=10)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_alive(what: str, timeout: float, check: Callable[[], bool],
               processes: Mapping[str, subprocess.Popen], log: Callable[[str], Path],
               component: str, owner: str = "") -> None:
    """Wait until ``check()`` holds, failing at once (with its log's tail) when one of
    ``processes`` exits meanwhile, and with ``component``'s log after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise ClusterError(f"{owner}{name} exited ({process.returncode}) while waiting "
                                   f"for {what}:\n{tail(log(name))}")
        if check():
            return
        time.sleep(0.3)
    raise ClusterError(f"timed out after {timeout:g}s waiting for {what}; {owner}{component} "
                       f"log:\n{tail(log(component))}")
