"""Live metrics: scalars a real job writes reach the follower while it runs, through the
metric relay in the log stream, and agree with the event files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cellship
from cellship.train.backend import Backend
from cellship.watch.metrics import RELAY_MARK
from tests.conftest import wait_until_gone
from tests.integration import jobs as programs

pytestmark = pytest.mark.tf


def test_scalars_arrive_while_the_job_runs_and_match_the_event_files(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(programs.TRAIN_DIGITS.format(epochs=4, sleep=1.5))
    job = cellship.submit_script(script, workers=2, name="live")
    arrivals: list[tuple[float, cellship.train.api.ScalarPoint]] = []
    lines: list[str] = []
    record = job.follow(lambda line: lines.append(str(line)),
                        on_metric=lambda p: arrivals.append((time.time(), p)))
    assert record.status == "succeeded", job.failure_report()
    relayed = [(p.run, p.tag, p.step, round(p.value, 6)) for _, p in arrivals]
    loss_steps = sorted(step for run, tag, step, _ in relayed if (run, tag) == ("train", "epoch_loss"))
    assert loss_steps == [0, 1, 2, 3]
    # Live: the first epoch's loss reached us long before the job ended (4 epochs, 1.5 s apart).
    first_loss = min(t for t, p in arrivals if p.tag == "epoch_loss")
    assert record.ended - first_loss > 3.0
    # Fresh: each point arrived within a couple of seconds of being written.
    assert max(t - p.wall_time for t, p in arrivals) < 3.0
    # The relay lines are not shown as log lines...
    assert not any(RELAY_MARK.strip() in line for line in lines)
    assert not any(RELAY_MARK in line.text for line in job.logs())
    # ...and they carry exactly what the event files hold.
    frame = job.metrics()
    assert list(frame.columns) == ["step", "wall_time", "run", "tag", "value"]
    from_files = sorted((r.run, r.tag, int(r.step), round(float(r.value), 6)) for r in frame.itertuples())
    assert sorted(relayed) == from_files
    # The backend-neutral relay reader (what a remote backend uses) agrees too.
    via_relay = Backend.metrics(job._backend, job.record)
    assert sorted((p.run, p.tag, p.step, round(p.value, 6)) for p in via_relay) == from_files
    status = job.to_dict()
    last_loss = frame[(frame.tag == "epoch_loss") & (frame.run == "train")].sort_values("step").value.iloc[-1]
    assert status["metrics"]["train/epoch_loss"]["step"] == 3
    assert status["metrics"]["train/epoch_loss"]["value"] == pytest.approx(last_loss)
    wait_until_gone(job.id, within=5)


def test_status_json_from_cli_has_last_metric_values(tmp_path: Path) -> None:
    script = tmp_path / "scalars.py"
    script.write_text(
        "import tensorflow as tf\nimport cellship\n"
        "writer = tf.summary.create_file_writer(str(cellship.job.logdir() / 'custom'))\n"
        "with writer.as_default():\n"
        "    for step in range(5):\n"
        "        tf.summary.scalar('reward', step * 1.5, step=step)\n"
        "writer.flush()\n")
    job = cellship.submit_script(script)
    assert job.wait(timeout=120).status == "succeeded", job.failure_report()
    out = subprocess.run([sys.executable, "-m", "cellship.cli", "status", job.id, "--json"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    metrics = json.loads(out)["metrics"]
    assert metrics["custom/reward"]["step"] == 4 and metrics["custom/reward"]["value"] == 6.0
