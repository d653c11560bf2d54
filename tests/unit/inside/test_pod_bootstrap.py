"""The pod bootstrap waits for peer DNS names, and fails clearly after its timeout.

No network: the subprocess replaces socket.getaddrinfo before the script runs, so not
even the local resolver is asked (``.invalid`` names would otherwise still reach it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cellship.inside import pod_bootstrap as pb

SCRIPT = Path(pb.__file__)
TF_CONFIG = {"cluster": {"worker": ["w-0.svc.nonexistent.invalid:2222",
                                    "w-1.svc.nonexistent.invalid:2222"]},
             "task": {"type": "worker", "index": 0}}
RUNNER = """
import runpy, socket, sys
resolvable = set(sys.argv[2].split(",")) if sys.argv[2] else set()
def fake(host, *args, **kwargs):
    if host in resolvable:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 0))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
socket.getaddrinfo = fake
sys.argv = [sys.argv[1], sys.argv[3]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run(tmp_path: Path, resolvable: str, timeout: str = "0.3") -> subprocess.CompletedProcess:
    program = tmp_path / "program.py"
    program.write_text("import os; print('program ran', os.environ['CELLSHIP_TASK_TYPE'])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLSHIP_")}
    env |= {"TF_CONFIG": json.dumps(TF_CONFIG), "CELLSHIP_PEER_TIMEOUT": timeout,
            "CELLSHIP_TASK_TYPE": "worker", "CELLSHIP_JOB_DIR": str(tmp_path / "job")}
    return subprocess.run([sys.executable, "-c", RUNNER, str(SCRIPT), resolvable, str(program)],
                          env=env, capture_output=True, text=True, timeout=20)


def test_times_out_with_a_clear_message(tmp_path: Path) -> None:
    out = run(tmp_path, "")
    assert out.returncode == pb.EXIT_PEERS_UNRESOLVED
    assert "w-1.svc.nonexistent.invalid" in out.stderr
    assert "w-0" not in out.stderr  # its own name is not waited for
    assert "do not resolve" in out.stderr and "peer_timeout" in out.stderr
    assert "program ran" not in out.stdout


def test_execs_the_program_once_peers_resolve(tmp_path: Path) -> None:
    out = run(tmp_path, "w-1.svc.nonexistent.invalid")
    assert out.returncode == 0, out.stderr
    assert "program ran worker" in out.stdout


def test_wait_returns_once_names_appear() -> None:
    """A peer that appears after two tries is waited for (injected resolver and clock)."""
    tries = {"n": 0}
    now = [0.0]

    def resolve(host, port):
        tries["n"] += 1
        if tries["n"] < 3:
            raise socket.gaierror("not yet")

    def sleep(seconds):
        now[0] += seconds

    assert pb.wait_for_peers(["a"], timeout=10, resolve=resolve, clock=lambda: now[0],
                             sleep=sleep) == []
    assert tries["n"] == 3 and now[0] == pytest.approx(2.0)


def test_peer_hosts_for_parameter_server_layout() -> None:
    config = {"cluster": {"chief": ["c:1"], "worker": ["w0:1", "w1:1"], "ps": ["p:1"]},
              "task": {"type": "ps", "index": 0}}
    assert pb.peer_hosts(config) == ["c", "w0", "w1"]


def test_the_script_imports_nothing_from_cellship() -> None:
    source = SCRIPT.read_text()
    assert "import cellship" not in source and "from cellship" not in source and "from ." not in source
