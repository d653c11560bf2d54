"""Which processes are our TensorBoards, and stopping them with their whole process group.

Pids are reused, so a registered pid only counts as ours while its command line still says
``tensorboard ... --port PORT``; servers this process started are also kept as Popen
objects, so they are reaped (never left as zombies) and recognised even before exec.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import psutil

from cellship.processes import pid_alive

KILL_GRACE_SECONDS = 5.0  # TensorBoard needs ~3 s to run its atexit handlers on SIGTERM
_GONE = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})


@dataclass
class Child:
    """A server this process started: its Popen (so it is reaped, never a zombie) and where
    it is registered (CELLSHIP_HOME may change later, e.g. between tests)."""

    proc: subprocess.Popen
    port: int
    root: Path
    state_dir: Path
    parent_bound: bool
    creator: int  # os.getpid() at start: a forked child must not stop its parent's servers


CHILDREN: dict[int, Child] = {}
CHILDREN_LOCK = threading.Lock()


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (TensorBoard and its data server)."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() not in _GONE:
                members.append(pid)
        except (OSError, psutil.Error):  # exited meanwhile
            continue
    return members


def is_our_tensorboard(pid: int, port: int) -> bool:
    """Whether ``pid`` is still the TensorBoard we registered (pids are reused): its
    command line says tensorboard and ``--port PORT``."""
    try:
        args = psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:  # gone, or a zombie
        return False
    except psutil.AccessDenied:
        return pid_alive(pid)  # its command line is not ours to read: trust the pid
    return any("tensorboard" in a for a in args) and any(
        a == "--port" and b == str(port) for a, b in zip(args, args[1:]))


def reap(pid: int) -> None:
    with CHILDREN_LOCK:
        child = CHILDREN.get(pid)
    if child is not None and child.proc.poll() is not None:
        with CHILDREN_LOCK:
            CHILDREN.pop(pid, None)


def _ours(pid: int, port: int) -> bool:
    with CHILDREN_LOCK:
        child = CHILDREN.get(pid)
    if child is not None and child.port == port and child.proc.returncode is None:
        return True  # even as an unreaped zombie, its group may still hold the data server
    return is_our_tensorboard(pid, port)


def terminate(targets: Sequence[tuple[int, int]], grace: float = KILL_GRACE_SECONDS) -> None:
    """Stop every (pid, port) server: SIGTERM to its process group (TensorBoard removes its
    own bookkeeping), SIGKILL to what is left after ``grace``, then wait until the group,
    data server included, is gone."""
    groups = [pid for pid, port in targets if _ours(pid, port)]
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while True:
        for pgid in groups:
            reap(pgid)
        left = [g for g in groups if group_members(g)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pgid in left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5.0
    while left and time.monotonic() < deadline:
        for pgid in left:
            reap(pgid)
        left = [g for g in left if group_members(g)]
        time.sleep(0.05)
    for pid, port in targets:
        if pid in groups or not pid_alive(pid):
            _remove_tensorboard_info(pid, port)


def _remove_tensorboard_info(pid: int, port: int) -> None:
    """TensorBoard's own record of a server (for its ``%tensorboard`` magic), which it
    cannot remove when SIGKILL or PDEATHSIG ends it."""
    path = Path(tempfile.gettempdir(), ".tensorboard-info", f"pid-{pid}.info")
    try:
        if json.loads(path.read_text()).get("port") == port:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
