"""The chief pod's keeper: it sees the program's lock, lingers, and ends on release."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cellship.inside import keeper, pod_bootstrap


def test_the_lock_lasts_exactly_as_long_as_the_program(tmp_path: Path) -> None:
    folder = keeper.state_dir(str(tmp_path))
    assert keeper.program_running(folder) is None  # not started yet
    # As the pod bootstrap does: lock, keep the descriptor across exec, run the program.
    code = ("import os, sys\nfrom cellship.inside.pod_bootstrap import hold_running_lock\n"
            f"hold_running_lock({str(tmp_path)!r})\n"
            "os.execv(sys.executable, [sys.executable, '-c', 'import sys; sys.stdin.read()'])\n")
    program = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        deadline = 50
        while keeper.program_running(folder) is not True and deadline:
            deadline -= 1
            subprocess.run(["sleep", "0.1"])
        assert keeper.program_running(folder) is True
    finally:
        program.communicate(b"")  # the program ends...
    assert keeper.program_running(folder) is False  # ...and the kernel dropped its lock


def test_it_lingers_after_the_program_then_gives_up(tmp_path: Path) -> None:
    folder = keeper.state_dir(str(tmp_path))
    os.makedirs(folder)
    (Path(folder) / keeper.STARTED).touch()  # the program ran and ended: no lock held
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    assert keeper.keep(str(tmp_path), linger=5, clock=lambda: now[0], sleep=sleep) == 0
    assert 5 <= now[0] <= 6


def test_release_ends_it_at_once(tmp_path: Path) -> None:
    keeper.release(str(tmp_path))
    assert keeper.keep(str(tmp_path), linger=1e9, sleep=lambda _s: None) == 0


def test_a_pod_given_gpus_it_cannot_see_says_tensorflow_runs_on_the_cpu() -> None:
    text = pod_bootstrap.gpu_notice({"CELLSHIP_GPUS": "1"}, devices=[])
    assert text is not None and "1 nvidia.com/gpu" in text and "CPU" in text
    assert pod_bootstrap.gpu_notice({"CELLSHIP_GPUS": "1"}, devices=["/dev/nvidia0"]) is None
    assert pod_bootstrap.gpu_notice({}, devices=[]) is None
