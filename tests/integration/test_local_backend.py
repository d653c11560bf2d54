"""The embedded local backend with real processes and real TensorFlow training."""

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
from tests.integration import jobs as programs

pytestmark = pytest.mark.tf


def _script(tmp_path: Path, text: str, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _wait_for_log(job: cellship.Job, pattern: str, timeout: float) -> str:
    """Wait until some replica's log matches ``pattern``; return that log's text."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for replica in job.record.replicas:
            try:
                text = Path(replica.log_path).read_text(errors="replace")
            except FileNotFoundError:
                continue
            if re.search(pattern, text):
                return text
        if job.record.done:
            break
        time.sleep(0.2)
    pytest.fail(f"no log line matched {pattern!r} within {timeout} s; job {job.record.status}")


def test_two_workers_train_and_save(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.TRAIN_DIGITS.format(epochs=3, sleep=0)),
                                 workers=2, name="mwms")
    lines = [str(line) for line in job.logs(follow=True)]
    record = job.wait(timeout=60)
    assert record.status == "succeeded", job.failure_report()
    # Both workers trained (each prints its epochs), in sync under MultiWorkerMirrored.
    assert any(line.startswith("[worker 0] Epoch 3/3") for line in lines)
    assert any(line.startswith("[worker 1] Epoch 3/3") for line in lines)
    losses = {label: [float(m) for m in re.findall(r"epoch-done \d loss=([\d.]+)", "\n".join(
        l for l in lines if l.startswith(f"[{label}]")))] for label in ("worker 0", "worker 1")}
    assert losses["worker 0"] == losses["worker 1"]  # all-reduced: identical on both workers
    assert losses["worker 0"][-1] < losses["worker 0"][0]  # it learned
    models = job.saved_models()
    assert [m.name for m in models] == ["digits"]
    assert (models[0] / "saved_model.pb").is_file()
    # Only the chief's summaries stay in the logdir.
    assert list(Path(record.logdir).rglob("events.out.tfevents.*"))
    assert not [p for p in Path(record.logdir).iterdir() if p.name.startswith("workertemp")]
    status = job.to_dict()
    for key in ("id", "name", "status", "backend", "replicas", "output_dir", "logdir",
                "created", "started", "ended", "error"):
        assert key in status
    assert [(r["type"], r["index"], r["state"], r["exit_code"]) for r in status["replicas"]] == [
        ("worker", 0, "succeeded", 0), ("worker", 1, "succeeded", 0)]
    wait_until_gone(job.id, within=5)


def test_parameter_server_topology_trains(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.TRAIN_PS), workers=2, ps=1, name="ps")
    record = job.wait(timeout=120)
    assert record.status == "succeeded", job.failure_report()
    states = {(r.type, r.index): r.state for r in record.replicas}
    assert states[("chief", 0)] == "succeeded"
    # Servers never exit by themselves: the supervisor stops them once the chief is done.
    assert states[("worker", 0)] == states[("worker", 1)] == states[("ps", 0)] == "killed"
    chief_log = Path(record.job_dir, "logs", "chief-0.log").read_text()
    assert "/job:ps/" in chief_log  # variables live on the parameter server
    assert "final-loss" in chief_log
    assert [m.name for m in job.saved_models()] == ["digits-ps"]
    config = json.loads(Path(record.job_dir, "spec.json").read_text())
    assert config["strategy"] == "parameter_server"
    wait_until_gone(job.id, within=5)


def test_crashing_worker_fails_job_and_stops_the_others(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.CRASH_ONE_WORKER), workers=2)
    record = job.wait(timeout=60)
    assert record.status == "failed"
    assert "worker 1 exited with code 1" in record.error
    assert "ValueError: boom from worker 1" in record.error
    codes = {r.label: (r.state, r.exit_code) for r in record.replicas}
    assert codes["worker 1"] == ("failed", 1)
    assert codes["worker 0"][0] == "killed" and codes["worker 0"][1] < 0
    assert record.ended - _failure_time(record) < 5.0
    report = job.failure_report()
    assert "Traceback (most recent call last)" in report and "boom from worker 1" in report
    wait_until_gone(job.id, within=5)


def _failure_time(record) -> float:
    log = Path(record.job_dir, "logs", "worker-1.log")
    return log.stat().st_mtime


def test_timeout_fails_and_kills_everything(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.SLEEPER.format(count=600, interval=1)),
                                 workers=2, timeout=3)
    record = job.wait(timeout=60)
    assert record.status == "failed"
    assert "timed out after 3 s" in record.error
    assert all(r.state == "killed" for r in record.replicas)
    wait_until_gone(job.id, within=5)


def test_cancel_stops_every_process(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.SLEEPER.format(count=600, interval=0.5)),
                                 workers=2, name="to-cancel")
    _wait_for_log(job, r"tick 1", timeout=60)
    assert len(job_processes(job.id)) >= 3  # supervisor + 2 replicas
    started = time.monotonic()
    record = job.cancel()
    assert record.status == "cancelled"
    assert time.monotonic() - started < 10
    wait_until_gone(job.id, within=5)
    # Cancelling again is harmless and says so.
    assert job.cancel().status == "cancelled"


def test_peer_that_never_comes_up_fails_after_startup_timeout(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.PEER_NEVER_COMES), workers=2,
                                 startup_timeout=8)
    record = job.wait(timeout=120)
    assert record.status == "failed"
    assert "startup timeout" in record.error and "worker 1" in record.error
    assert "worker 0" not in record.error.split(":", 1)[1]  # worker 0 did reach the strategy
    wait_until_gone(job.id, within=5)


def test_killed_worker_restarts_and_resumes_from_backup(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.TRAIN_DIGITS.format(epochs=6, sleep=1.0)),
                                 workers=2, max_restarts=1, name="resume")
    _wait_for_log(job, r"epoch-done 3", timeout=120)
    victim = next(r for r in job.record.replicas if r.label == "worker 1")
    os.kill(victim.pid, signal.SIGKILL)
    record = job.wait(timeout=180)
    assert record.status == "succeeded", job.failure_report()
    assert record.restarts == 1
    log = Path(record.job_dir, "logs", "worker-0.log").read_text()
    before, after = log.split("---- cellship: restart 1 of 1 ----")
    assert "Epoch 1/6" in before
    resumed = [int(n) for n in re.findall(r"Epoch (\d)/6", after)]
    assert resumed and resumed[0] > 1, f"training restarted from epoch {resumed[:1]}, not from the backup"
    assert resumed[-1] == 6
    events = [message for _, kind, message in Store.default().events(job.id) if kind == "restart"]
    assert events and "worker 1 was killed by SIGKILL" in events[0]
    wait_until_gone(job.id, within=5)


def test_workers_with_their_own_backups_resume_from_the_freshest(tmp_path: Path) -> None:
    """Each worker keeps its own backup (as pods do, their job dirs not shared); after a
    kill, worker 1 has lost its copy (as a recreated pod): the workers adopt worker 0's
    through TensorFlow's collectives and both resume after the last finished epoch."""
    job = cellship.submit_script(_script(tmp_path, programs.own_backups(epochs=6, sleep=1.0)),
                                 workers=2, max_restarts=1, name="own-backups",
                                 env={"CELLSHIP_PRIVATE_JOB_DIR": "1"})
    _wait_for_log(job, r"epoch-done 3", timeout=120)
    victim = next(r for r in job.record.replicas if r.label == "worker 1")
    os.kill(victim.pid, signal.SIGKILL)
    record = job.wait(timeout=180)
    assert record.status == "succeeded", job.failure_report()
    logs = {r.label: Path(record.job_dir, "logs", f"{r.type}-{r.index}.log").read_text()
            for r in record.replicas}
    for label, log in logs.items():
        after = log.split("---- cellship: restart 1 of 1 ----")[1]
        resumed = [int(n) for n in re.findall(r"Epoch (\d)/6", after)]
        assert resumed and resumed[0] >= 4 and resumed[-1] == 6, (label, resumed)
    after_1 = logs["worker 1"].split("---- cellship: restart 1 of 1 ----")[1]
    assert "worker 1 lost its backup" in after_1
    assert "own backup held no backup; resuming from worker 0's" in after_1, after_1[-3000:]
    assert "resuming from worker" not in logs["worker 0"]  # it held the freshest copy
    wait_until_gone(job.id, within=5)


def test_killed_supervisor_takes_its_workers_along(tmp_path: Path) -> None:
    job = cellship.submit_script(_script(tmp_path, programs.SLEEPER.format(count=600, interval=0.5)),
                                 workers=2)
    _wait_for_log(job, r"tick 1", timeout=60)
    os.kill(job.record.supervisor_pid, signal.SIGKILL)
    wait_until_gone(job.id, within=5)
    record = job.record  # refresh notices the supervisor is gone
    assert record.status == "failed"
    assert "supervisor" in record.error


def test_cli_train_streams_prefixed_logs_and_summary(tmp_path: Path) -> None:
    script = _script(tmp_path, programs.SLEEPER.format(count=3, interval=0.1))
    cli = [sys.executable, "-m", "cellship.cli"]
    done = subprocess.run(cli + ["train", str(script), "--workers", "2", "--name", "cli-job"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[worker 0] tick 0" in done.stdout and "[worker 1] sleeper done" in done.stdout
    assert "job cli-job" in done.stderr and "succeeded" in done.stderr
    status = json.loads(subprocess.run(cli + ["status", "cli-job", "--json"], capture_output=True,
                                       text=True, timeout=60, check=True).stdout)
    assert status["status"] == "succeeded" and status["name"] == "cli-job"
    listed = json.loads(subprocess.run(cli + ["jobs", "--json"], capture_output=True, text=True,
                                       timeout=60, check=True).stdout)
    assert [j["id"] for j in listed] == [status["id"]]
    logs = subprocess.run(cli + ["logs", status["id"][:5]], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert "[worker 1] tick 2" in logs


def test_cli_cancel_and_follow(tmp_path: Path) -> None:
    script = _script(tmp_path, programs.SLEEPER.format(count=600, interval=0.2))
    cli = [sys.executable, "-m", "cellship.cli"]
    job_id = subprocess.run(cli + ["train", str(script), "--detach"], capture_output=True,
                            text=True, timeout=60, check=True).stdout.strip()
    follower = subprocess.Popen(cli + ["logs", job_id, "-f"], stdout=subprocess.PIPE, text=True)
    first = follower.stdout.readline()
    assert first.startswith("[worker 0] tick")
    cancelled = subprocess.run(cli + ["cancel", job_id], capture_output=True, text=True, timeout=60)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    follower.wait(timeout=15)  # `logs -f` ends by itself when the job ends
    assert follower.returncode == 0
    wait_until_gone(job_id, within=5)
