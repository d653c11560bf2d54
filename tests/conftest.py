"""Shared fixtures: every test gets its own cellship home, and jobs must leave no process."""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil
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


def hide_clusters(env: pytest.MonkeyPatch, scratch: Path) -> None:
    """Make this process (and what it starts) see no Kubernetes: no kubeconfig (one that
    does not exist under ``scratch``), no pod ServiceAccount, no CELLSHIP_* cluster
    defaults; so a test can never reach a cluster the machine happens to know."""
    from cellship.kube import flags

    for var in flags.ENV_DEFAULTS.values():
        env.delenv(var, raising=False)
    env.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    env.delenv("CELLSHIP_BACKEND", raising=False)
    env.setenv("KUBECONFIG", str(scratch / "no-kubeconfig"))


# A process that passes for a `cellship serve` (its argv reads `... -m cellship.cli serve
# digits`) and exits on SIGTERM as a drain would: for the server registry's tests.
STAND_IN = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")


@pytest.fixture
def stand_in() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", STAND_IN, "-m", "cellship.cli", "serve",
                                "digits"], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"up\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()
    process.stdout.close()


# What outlives the session. A child left running (a test that failed before its cleanup) is
# killed here, because Python's exit would otherwise wait for it: multiprocessing joins its
# children at exit, and once such a join held CI until the job's time ran out.
_LEFT_BEHIND: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            _LEFT_BEHIND.append(f"{child.pid} {' '.join(child.cmdline())[:200]}")
            child.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(children, timeout=10)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _LEFT_BEHIND:
        terminalreporter.section("processes the tests left behind (killed)")
        for line in _LEFT_BEHIND:
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Once pytest is done, anything still holding the interpreter (a non-daemon thread, a
    stuck atexit handler) gets two minutes; then every thread's stack is printed and the run
    exits 1, so CI reports the culprit instead of timing out with nothing said."""
    faulthandler.dump_traceback_later(120, exit=True, file=sys.__stderr__)
