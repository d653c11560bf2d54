"""cellship.train.local.backend: telling our job's processes from whatever reused a pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from cellship.train.local.backend import _is_our_process


def _sleeper(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A child that has exec'd (before that, its command line and environment are still
    this process's copy)."""
    code = "import time; time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 10
    while code not in psutil.Process(proc.pid).cmdline() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_the_job_id_on_the_command_line_marks_the_supervisor() -> None:
    proc = _sleeper("abcd1234")
    try:
        assert _is_our_process(proc.pid, "abcd1234")
        assert not _is_our_process(proc.pid, "ffff0000")
    finally:
        proc.kill()
        proc.wait()
    assert not _is_our_process(proc.pid, "abcd1234")  # gone


def test_the_job_id_in_the_environment_marks_a_replica() -> None:
    proc = _sleeper(env={"CELLSHIP_JOB_ID": "abcd1234"})
    try:
        assert _is_our_process(proc.pid, "abcd1234")
    finally:
        proc.kill()
        proc.wait()


def test_no_pid_is_never_ours() -> None:
    assert not _is_our_process(None, "abcd1234")
