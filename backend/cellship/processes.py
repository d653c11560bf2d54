"""Process helpers shared by everything in cellship that starts or watches processes
(the supervisor's replicas, TensorBoard, the model server, batch runs).

Liveness goes through psutil (portable, and it reads the process state for us): a zombie
is not alive, since our own exited child stays a zombie until reaped. PR_SET_PDEATHSIG
(Linux; psutil has no equivalent) makes a child die with the thread that started it even
when that thread's process is SIGKILLed.
"""

from __future__ import annotations

import ctypes
import signal
from typing import Any

import psutil

_PR_SET_PDEATHSIG = 1
_GONE = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})


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


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a running process (zombies are not)."""
    if not pid or pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() not in _GONE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True  # it exists; only its details are another user's
