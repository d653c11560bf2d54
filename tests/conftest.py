"""Shared fixtures: every test gets its own cellship home, and jobs must leave no process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def cellship_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated CELLSHIP_HOME (job store + job dirs) for each test."""
    home = tmp_path_factory.mktemp("cellship-home")
    monkeypatch.setenv("CELLSHIP_HOME", str(home))
    return home


def job_processes(job_id: str) -> list[int]:
    """PIDs of live processes that belong to a job (replicas carry CELLSHIP_JOB_ID in their
    environment; the supervisor has the id on its command line)."""
    marker_env = f"CELLSHIP_JOB_ID={job_id}".encode()
    marker_sup = f"CELLSHIP_SUPERVISED_JOB={job_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker_env + b"\0" in environ + b"\0" or marker_sup in environ:
            found.append(int(entry.name))
    return found


def wait_until_gone(job_id: str, within: float) -> float:
    """Seconds until no process of the job is left; fails the test after ``within``."""
    start = time.monotonic()
    while True:
        left = job_processes(job_id)
        if not left:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            pytest.fail(f"job {job_id} left processes behind: {left}")
        time.sleep(0.1)
