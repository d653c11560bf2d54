"""Process helpers shared by everything in cellship that starts or watches processes
(the supervisor's replicas, TensorBoard, the model server, batch runs).

Linux-first, as the local backend is: /proc for liveness (a zombie is not alive: our own
exited child stays a zombie until reaped), PR_SET_PDEATHSIG so a child dies with the
thread that started it even when that thread's process is SIGKILLed.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once, at import in the parent: die_with_parent runs between fork and exec, where
# loading a library (taking the loader's lock) could deadlock in a multi-threaded parent
# such as a Jupyter kernel.
_PRCTL = _load_prctl()


def die_with_parent() -> None:
    """``preexec_fn`` for children that must not outlive their starter: Linux sends them
    SIGKILL when the starting thread exits, however it exits."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, Z, ...), or None if there is no such
    process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a running process (zombies are not)."""
    if not pid or pid <= 0:
        return False
    state = process_state(pid)
    if state is not None:
        return state not in ("Z", "X")
    if os.path.exists("/proc/self"):
        return False  # /proc works and has no entry for it: gone
    try:  # no /proc on this system: ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
