"""Real TensorBoard servers (cellship.watch.tensorboard) over real TF event files.

The event files are written once per module by a subprocess with ``tf.summary`` (no model
is trained). Every server is checked through TensorBoard's own JSON API, and every test
checks in /proc that what it started is gone afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from cellship.cli import main
from cellship.errors import BackendError
from cellship.store import JobRecord, ReplicaRecord, Store
from cellship.watch import tensorboard as tb
from cellship.watch.tensorboard import launch
from tests.interrupt import sigint_default

pytestmark = pytest.mark.tensorboard

# run -> (steps, values) written into the module's logdirs
LOSSES = {"a": ([0, 1, 2, 3], [0.9, 0.7, 0.5, 0.4]), "b": ([0, 1, 2], [2.0, 1.5, 1.25])}

WRITE_EVENTS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    for logdir, (steps, values) in json.loads(sys.argv[1]).items():
        writer = tf.summary.create_file_writer(logdir + "/train")
        with writer.as_default():
            for step, value in zip(steps, values):
                tf.summary.scalar("epoch_loss", value, step=step)
        writer.close()
""")


@pytest.fixture(scope="module")
def logdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two job-like logdirs, each with a ``train`` run holding ``epoch_loss`` scalars."""
    root = tmp_path_factory.mktemp("event-files")
    dirs = {name: root / f"job-{name}" / "tensorboard" for name in LOSSES}
    spec = {str(dirs[name]): LOSSES[name] for name in LOSSES}
    subprocess.run([sys.executable, "-c", WRITE_EVENTS, json.dumps(spec)], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120)
    for path in dirs.values():
        assert list((path / "train").glob("events.out.tfevents.*"))
    return dirs


@pytest.fixture(autouse=True)
def no_server_left_behind():
    """Whatever a test started is stopped, and no TensorBoard of this test outlives it."""
    yield
    for server in tb.stop_all():
        _assert_gone([server.pid], within=10)


# -- helpers ---------------------------------------------------------------------------
def _get(server: tb.TensorBoardServer, path: str) -> Any:
    with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=10) as response:
        return json.loads(response.read().decode())


def _wait_for(check: Callable[[], Any], within: float, what: str) -> Any:
    end = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {within} s")
        time.sleep(0.2)


def _runs(server: tb.TensorBoardServer) -> list[str]:
    return _get(server, "/data/runs")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tree(pid: int) -> list[int]:
    """The TensorBoard process and every descendant (its Rust data server)."""
    proc = psutil.Process(pid)
    return [pid] + [child.pid for child in proc.children(recursive=True)]


def _assert_gone(pids: list[int], within: float) -> None:
    end = time.monotonic() + within
    while any(_alive(p) for p in pids):
        if time.monotonic() > end:
            left = [p for p in pids if _alive(p)]
            pytest.fail(f"processes left behind: {left}")
        time.sleep(0.1)


def _add_job(job_id: str, name: str, logdir: Path) -> JobRecord:
    record = JobRecord(id=job_id, name=name, status="pending", backend="local",
                       spec={"workers": 1, "ps": 0, "gpus": 0, "strategy": "single"},
                       job_dir=str(logdir.parent), output_dir=str(logdir.parent / "output"),
                       logdir=str(logdir), created=time.time(),
                       replicas=(ReplicaRecord(job_id, "worker", 0, "pending", None, None, 0,
                                               str(logdir.parent / "worker-0.log"), None),))
    Store.default().create_job(record)
    return record


def _listening_addresses(pid: int) -> set[str]:
    found = set()
    for pid_ in _tree(pid):
        for conn in psutil.Process(pid_).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add(conn.laddr.ip)
    return found


# -- one server --------------------------------------------------------------------------
def test_scalars_written_come_back_through_tensorboard(logdirs, capsys):
    began = time.monotonic()
    server = tb.start({"digits": logdirs["a"]})
    took = time.monotonic() - began
    with capsys.disabled():
        print(f"\n[tensorboard started in {took:.1f} s]", end=" ")
    assert server.host == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/"
    assert server.owner_pid == os.getpid()
    assert _wait_for(lambda: "digits/train" in _runs(server), 30, "run digits/train to appear")
    tags = _get(server, "/data/plugin/scalars/tags")
    assert set(tags) == {"digits/train"} and "epoch_loss" in tags["digits/train"]
    points = _get(server, "/data/plugin/scalars/scalars?run=digits/train&tag=epoch_loss")
    steps, values = LOSSES["a"]
    assert [p[1] for p in points] == steps
    assert [p[2] for p in points] == pytest.approx(values, rel=1e-6)
    # TensorBoard binds loopback only, and serves through its Rust data server (a symlink
    # tree + --logdir, not --logdir_spec, which would fall back to the Python loader)
    assert _listening_addresses(server.pid) <= {"127.0.0.1"}
    assert len(_tree(server.pid)) >= 2, "no data server child: TensorBoard uses its slow loader"
    assert any("server" in psutil.Process(p).name() for p in _tree(server.pid)[1:])
    # started without importing TensorFlow (main_without_tf: ~1 s to answer instead of 7-11 s)
    assert "TensorFlow installation not found" in Path(server.log_path).read_text()
    assert not any("libtensorflow" in m.path for m in psutil.Process(server.pid).memory_maps())


def test_stop_leaves_no_process_and_keeps_the_event_files(logdirs, cellship_home):
    server = tb.start({"digits": logdirs["a"]})
    pids = _tree(server.pid)
    assert len(pids) >= 2
    state_dirs = [p for p in (cellship_home / "tensorboard").iterdir() if p.is_dir()]
    assert len(state_dirs) == 1
    tb.stop(server)
    _assert_gone(pids, within=1)  # stop() returns only once the whole group is gone
    assert tb.running() == []
    assert not state_dirs[0].exists()
    assert list((logdirs["a"] / "train").glob("events.out.tfevents.*")), "stop() ate the logdir"
    tb.stop(server)  # stopping twice is harmless


def test_reuse_returns_the_same_server_and_reuse_false_a_new_one(logdirs):
    first = tb.start({"digits": logdirs["a"]})
    again = tb.start({"digits": str(logdirs["a"])})
    assert again == first
    other = tb.start({"digits": logdirs["a"]}, reuse=False)
    assert other.pid != first.pid and other.port != first.port
    assert sorted(s.pid for s in tb.running()) == sorted([first.pid, other.pid])
    different = tb.start({"digits-2": logdirs["a"]})  # other names: not the same server
    assert different.pid not in (first.pid, other.pid)


def test_a_dead_or_silent_server_is_not_reused(logdirs):
    first = tb.start({"digits": logdirs["a"]})
    os.kill(first.pid, signal.SIGSTOP)  # alive, but its port no longer answers
    try:
        second = tb.start({"digits": logdirs["a"]})
        assert second.pid != first.pid
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert {s.pid for s in tb.running()} == {first.pid, second.pid}
    pids = _tree(second.pid)
    os.killpg(second.pid, signal.SIGKILL)
    _assert_gone(pids, within=5)
    assert [s.pid for s in tb.running()] == [first.pid]  # the dead one was cleaned
    third = tb.start({"digits": logdirs["a"]})
    assert third.pid == first.pid  # answering again: reused


def test_two_logdirs_under_two_names_are_two_runs(logdirs):
    server = tb.start({"job:a": logdirs["a"], "job,b": logdirs["b"]})
    assert server.logdirs == (("job_a", str(logdirs["a"])), ("job_b", str(logdirs["b"])))
    runs = _wait_for(lambda: len(_runs(server)) == 2 and _runs(server), 30, "two runs")
    assert sorted(runs) == ["job_a/train", "job_b/train"]
    for run, key in (("job_a/train", "a"), ("job_b/train", "b")):
        points = _get(server, f"/data/plugin/scalars/scalars?run={run}&tag=epoch_loss")
        assert [p[2] for p in points] == pytest.approx(LOSSES[key][1], rel=1e-6)


def test_a_logdir_that_appears_later_is_picked_up(logdirs, tmp_path):
    later = tmp_path / "not-yet" / "tensorboard"
    server = tb.start({"early": logdirs["a"], "late": later})
    _wait_for(lambda: "early/train" in _runs(server), 30, "the existing run")
    assert "late/train" not in _runs(server)
    shutil.copytree(logdirs["b"], later)
    _wait_for(lambda: "late/train" in _runs(server), 30, "the new run")


def test_a_port_taken_meanwhile_is_retried_on_another(logdirs, monkeypatch):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    real = launch.free_port
    offered = iter([busy])
    monkeypatch.setattr(launch, "free_port", lambda host: next(offered, None) or real(host))
    try:
        server = tb.start({"digits": logdirs["a"]})
    finally:
        holder.close()
    assert next(offered, None) is None, "start() did not try the busy port first"
    assert server.port != busy
    assert "digits/train" in _wait_for(lambda: _runs(server), 30, "runs")


def test_tensorboard_that_dies_at_start_reports_its_log(logdirs, monkeypatch, tmp_path):
    fake = tmp_path / "tensorboard"
    fake.write_text("#!/bin/sh\necho 'E0101 something is wrong with the flags' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(launch, "tensorboard_command", lambda: [str(fake)])
    with pytest.raises(BackendError, match="exited with code 3") as info:
        tb.start({"digits": logdirs["a"]})
    assert "something is wrong with the flags" in str(info.value)
    assert tb.running() == []


def test_tensorboard_that_never_answers_times_out_and_is_killed(logdirs, monkeypatch, tmp_path):
    fake = tmp_path / "tensorboard"
    fake.write_text("#!/bin/sh\necho 'still loading plugins'\nsleep 60 & wait\n")
    fake.chmod(0o755)
    monkeypatch.setattr(launch, "tensorboard_command", lambda: [str(fake)])
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(BackendError, match="did not answer .* within 2 s") as info:
        tb.start({"digits": logdirs["a"]}, timeout=2)
    assert "still loading plugins" in str(info.value)
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    _assert_gone(list(started), within=1)


# -- owners that go away ---------------------------------------------------------------
STARTER = textwrap.dedent("""
    import json, os, sys
    import psutil
    from cellship.watch import tensorboard as tb
    server = tb.start({"digits": sys.argv[1]})
    tree = [server.pid] + [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
    print(json.dumps(tree), flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), 9)
    if sys.argv[2] == "wait":
        sys.stdin.read()
""")


def _registered(home: Path) -> list[dict]:
    """The registry as stored (running() would clean it first)."""
    return json.loads((home / "tensorboard" / "servers.json").read_text())["servers"]


def _tensorboard_info(pid: int) -> Path:
    return Path(tempfile.gettempdir(), ".tensorboard-info", f"pid-{pid}.info")


def _state_dirs(home: Path) -> list[Path]:
    return [p for p in (home / "tensorboard").iterdir() if p.is_dir()]


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_process_that_started_a_server_takes_it_along_when_it_ends(logdirs, how, cellship_home):
    """exit: the atexit hook stops it and tidies the registry; kill (SIGKILL, no atexit):
    PDEATHSIG stops it, and the next look at the registry drops the stale entry."""
    proc = subprocess.run([sys.executable, "-c", STARTER, str(logdirs["a"]), how],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == (0 if how == "exit" else -9), proc.stderr
    tree = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(tree) >= 2
    _assert_gone(tree, within=10)
    if how == "exit":
        assert _registered(cellship_home) == [] and _state_dirs(cellship_home) == []
    else:
        assert [e["pid"] for e in _registered(cellship_home)] == [tree[0]]
    assert tb.running() == []
    assert _registered(cellship_home) == [] and _state_dirs(cellship_home) == []
    assert not _tensorboard_info(tree[0]).exists()  # TensorBoard's own record, tidied too


def test_a_server_bound_to_another_live_process_is_not_reused(logdirs):
    other = subprocess.Popen([sys.executable, "-c", STARTER, str(logdirs["a"]), "wait"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tree = json.loads(other.stdout.readline())
        assert [s.pid for s in tb.running()] == [tree[0]]
        mine = tb.start({"digits": logdirs["a"]})
        assert mine.pid != tree[0]  # it would vanish with the other process
    finally:
        other.stdin.close()
        other.wait(timeout=30)
    _assert_gone(tree, within=10)
    assert [s.pid for s in tb.running()] == [mine.pid]


# -- the CLI -----------------------------------------------------------------------------
def test_cli_busy_port_is_a_sentence_and_exit_1(logdirs, capsys):
    _add_job("j1tbbusy", "digits", logdirs["a"])
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        assert main(["tensorboard", "digits", "--port", str(port)]) == 1
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert err.strip() == (f"cellship: error: Port {port} on 127.0.0.1 is already in use; pick "
                           "another with --port, or leave --port out to use a free one.")
    assert tb.running() == []


def test_cli_serves_jobs_until_interrupted(logdirs, cellship_home):
    one = _add_job("j1tbcli00", "digits", logdirs["a"])
    two = _add_job("j2tbcli00", "digits", logdirs["b"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cellship.cli", "tensorboard", one.id, two.id,
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=sigint_default)  # we send it SIGINT
    try:
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/", proc.stderr.read() if not url else url
        (server,) = tb.running()
        assert server.port == port and server.owner_pid == proc.pid
        runs = _wait_for(lambda: len(_runs(server)) == 2 and _runs(server), 30, "both runs")
        assert sorted(runs) == [f"digits-{one.id}/train", f"digits-{two.id}/train"]
        tree = _tree(server.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_gone(tree, within=1)
    assert tb.running() == []


def test_cli_reports_a_server_that_dies(logdirs):
    _add_job("j1tbdies0", "digits", logdirs["a"])
    proc = subprocess.Popen([sys.executable, "-m", "cellship.cli", "tensorboard", "digits"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
        (server,) = tb.running()
        os.killpg(server.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        err = proc.stderr.read()
        assert f"TensorBoard (pid {server.pid}) stopped unexpectedly" in err
        assert "TensorBoard 2." in err  # the tail of its own log
        assert not _tensorboard_info(server.pid).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert tb.running() == []


# -- the magic in a real kernel --------------------------------------------------------
def test_job_tensorboard_magic_shows_the_proxied_url_and_dies_with_the_kernel(
        logdirs, tmp_path, monkeypatch, cellship_home):
    from tests.integration.test_magics_kernel import Kernel

    record = _add_job("j1tbmagic", "digits", logdirs["a"])
    monkeypatch.setenv("TENSORBOARD_PROXY_URL", "/user/alice/proxy/%PORT%/")
    kernel = Kernel(tmp_path)
    try:
        out, error = kernel.run("%load_ext cellship")
        assert error is None, out
        out, error = kernel.run(f"%job {record.id} tensorboard", timeout=120)
        assert error is None, out
        (server,) = tb.running()
        assert server.owner_pid == kernel.manager.provisioner.process.pid
        assert f"TensorBoard for job digits ({record.id}): /user/alice/proxy/{server.port}/" in out
        assert "IFrame" in out
        out, error = kernel.run(f"%job {record.id} tensorboard")  # reused, not a second one
        assert error is None and [s.pid for s in tb.running()] == [server.pid]
        _wait_for(lambda: "digits/train" in _runs(server), 30, "the job's run")
        tree = _tree(server.pid)
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=False)  # a polite shutdown: atexit stops it
    finally:
        if kernel.manager.is_alive():
            kernel.close()
    _assert_gone(tree, within=10)
    assert _registered(cellship_home) == []  # the kernel's atexit stopped it and tidied up
    assert tb.running() == []
