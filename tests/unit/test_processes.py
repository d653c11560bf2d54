"""cellship.processes: liveness as the supervisor, TensorBoard and batch runs rely on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cellship.processes import pid_alive


def test_a_running_process_is_alive() -> None:
    assert pid_alive(os.getpid())


def test_an_unreaped_child_is_a_zombie_and_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while pid_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)  # it exits, but stays a zombie until waited for
        assert not pid_alive(proc.pid)
        assert proc.poll() == 0  # it was still ours to reap: a zombie, not gone
    finally:
        proc.wait()
    assert not pid_alive(proc.pid)


def test_no_pid_is_not_alive() -> None:
    assert not pid_alive(None) and not pid_alive(0) and not pid_alive(-1)
