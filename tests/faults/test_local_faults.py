"""Local faults, injected for real with SIGKILL: the supervisor of a running job, the
kernel that follows a job.

- kill -9 the supervisor mid-job: within 10 s an observer in another process (``cellship
  jobs --json``, what the panel's list does too) sees the job failed with the supervisor
  named, its replicas are gone, and it never stays "running".
- kill -9 the kernel while a cell follows a job: the job goes on to succeed; a new kernel
  re-attaches and shows every line of every worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cellship
from cellship.store import Store
from tests.conftest import job_processes, wait_until_gone

LOST_WITHIN_S = 10.0  # the functional bound for "marked lost"

TICKER = """\
import time
for i in range({count}):
    print("tick", i, flush=True)
    time.sleep({interval})
print("ticker done", flush=True)
"""


def _wait_for_line(job: cellship.Job, pattern: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for replica in job.record.replicas:
            try:
                if re.search(pattern, Path(replica.log_path).read_text(errors="replace")):
                    return
            except FileNotFoundError:
                pass
        time.sleep(0.1)
    pytest.fail(f"{pattern!r} never appeared in the job's logs")


def _listed_status(job_id: str) -> tuple[str, str | None]:
    """The job's status as another process sees it: ``cellship jobs --json``."""
    out = subprocess.run([sys.executable, "-m", "cellship.cli", "jobs", "--json"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    row = next(j for j in json.loads(out) if j["id"] == job_id)
    return row["status"], row.get("error")


def test_kill_9_of_the_supervisor_marks_the_job_lost_within_10_s(tmp_path: Path) -> None:
    script = tmp_path / "ticker.py"
    script.write_text(TICKER.format(count=600, interval=0.2))
    job = cellship.submit_script(script, workers=2, name="orphaned")
    _wait_for_line(job, r"tick 2", timeout=60)
    replicas = [r.pid for r in job.record.replicas]
    assert all(replicas)
    killed = time.monotonic()
    os.kill(job.record.supervisor_pid, signal.SIGKILL)
    status, error = "running", None
    while time.monotonic() - killed < LOST_WITHIN_S:
        status, error = _listed_status(job.id)
        if status != "running":
            break
    assert status == "failed", f"still {status} {time.monotonic() - killed:.1f} s after the kill"
    print(f"supervisor killed: job seen failed after {time.monotonic() - killed:.1f} s")
    assert error and "supervisor" in error
    wait_until_gone(job.id, within=max(1.0, LOST_WITHIN_S - (time.monotonic() - killed)))
    assert not any(_alive(pid) for pid in replicas)
    time.sleep(1.0)
    assert Store.default().get_job(job.id).status == "failed"  # and it stays so


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.kernel
def test_kill_9_of_the_following_kernel_leaves_the_job_running_and_reattachable(tmp_path: Path) -> None:
    from tests.integration.test_magics_kernel import Kernel

    first = Kernel(tmp_path)
    second = None
    try:
        out, error = first.run("%load_ext cellship")
        assert error is None, out
        cell = ("%%train --workers 2 --name followed-then-killed\nimport time\n"
                "for i in range(16):\n    print('step', i, flush=True)\n    time.sleep(0.5)\n")
        msg = first.send(cell)
        first.wait_for_output(msg, r"step 2", timeout=120)
        job = Store.default().find_job("followed-then-killed")
        os.kill(first.manager.provisioner.pid, signal.SIGKILL)  # the kernel, mid-follow
        time.sleep(1.0)
        assert Store.default().get_job(job.id).status == "running"
        assert job_processes(job.id), "the job died with the kernel that followed it"

        second = Kernel(tmp_path)
        out, error = second.run("%load_ext cellship")
        assert error is None, out
        out, error = second.run("%job followed-then-killed attach", timeout=180)
        assert error is None, out
        for i in range(16):  # every line, of both workers, none lost to the kill
            assert f"[worker 0] step {i}\n" in out and f"[worker 1] step {i}\n" in out, i
        assert out.count("[worker 0] step 3\n") == 1  # and none repeated
        assert re.search(r"job followed-then-killed \(\w+\) succeeded", out), out[-500:]
        wait_until_gone(job.id, within=5)
    finally:
        first.client.stop_channels()
        try:
            first.manager.shutdown_kernel(now=True)
        except Exception:
            pass
        if second is not None:
            second.close()
