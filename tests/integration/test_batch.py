"""Batch runs and sweeps with real papermill executions and real kernels."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import cellship
from cellship.store import Store
from tests.interrupt import sigint_default

pytestmark = pytest.mark.kernel


def make_notebook(path: Path, body: str, parameters: str = "lr = 0.1\nepochs = 2\nflag = ''",
                  tagged: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    cells = []
    if parameters:
        cell = nbformat.v4.new_code_cell(parameters)
        if tagged:
            cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    cells.append(nbformat.v4.new_code_cell(body))
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


LIGHT = """
import os, time, pathlib, cellship
pathlib.Path(f"pid-{os.getpid()}").write_text(str(time.time()))
start = time.time()
time.sleep(0.5)
score = lr * epochs
cellship.record("score", score)
cellship.record("window", [start, time.time()])
if flag and pathlib.Path(flag).exists():
    raise ValueError(f"flag file {flag} says fail")
print("score", score)
"""


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellship.cli", *args], capture_output=True,
                          text=True, timeout=kwargs.pop("timeout", 240), **kwargs)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_dead(pids: list[int], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "processes left behind"


def _no_kernels_left(workdir: Path) -> None:
    """Every kernel the notebooks started wrote pid-<pid>: none may still be alive."""
    pids = [int(m.name.split("-")[1]) for m in workdir.glob("pid-*")]
    assert pids, "the notebooks should have recorded their kernels' pids"
    _wait_dead(pids)


def test_grid_sweep_in_parallel_with_a_failing_run_and_retry(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "sweep.ipynb", LIGHT)
    fail_flag = tmp_path / "fail-now"
    fail_flag.write_text("x")
    done = _cli("batch", str(notebook), "-p", "epochs", "3", "--grid", "lr=0.1,0.5",
                "--grid", f"flag='',{fail_flag}", "--parallel", "2", "--name", "sw")
    assert done.returncode == 1, done.stderr  # one run failed
    batch = cellship.get_batch("sw")
    runs = batch.runs
    assert [dict(r.parameters) for r in runs] == [
        {"epochs": 3, "lr": 0.1, "flag": ""}, {"epochs": 3, "lr": 0.1, "flag": str(fail_flag)},
        {"epochs": 3, "lr": 0.5, "flag": ""}, {"epochs": 3, "lr": 0.5, "flag": str(fail_flag)}]
    assert [r.status for r in runs] == ["succeeded", "failed", "succeeded", "failed"]
    assert "raised ValueError: flag file" in runs[1].error
    # Parameters really reached the kernels, and recorded values came back.
    assert [r.recorded["score"] for r in runs] == pytest.approx([0.3, 0.3, 1.5, 1.5])
    # Two at a time: some runs overlapped in time.
    windows = sorted(r.recorded["window"] for r in runs)
    assert any(b[0] < a[1] for a, b in zip(windows, windows[1:]))
    # A failed run keeps its output notebook, with papermill's error banner.
    failed_nb = nbformat.read(runs[1].output_path, as_version=4)
    assert any("papermill-error-cell-tag" in c.metadata.get("tags", []) or
               "An Exception was encountered" in "".join(c.get("source", "")) for c in failed_nb.cells)
    # The results table compares runs and sorts by any value.
    table = batch.results(sort_by="score", ascending=False)
    assert list(table["lr"])[:2] == [0.5, 0.5]
    shown = _cli("batch", "show", "sw", "--sort", "score", "--desc", "--json")
    assert [r["status"] for r in json.loads(shown.stdout)["runs"]][:2] == ["succeeded", "failed"]
    # Retry reruns only the failed runs.
    fail_flag.unlink()
    before = {r.index: r.ended for r in runs}
    retried = _cli("batch", "retry", "sw")
    assert retried.returncode == 0, retried.stderr
    after = cellship.get_batch("sw").runs
    assert [r.status for r in after] == ["succeeded"] * 4
    assert after[0].ended == before[0] and after[2].ended == before[2]
    assert after[1].attempt == 1 and Path(after[1].output_path).with_name("run-001.failed-1.ipynb").exists()
    _no_kernels_left(tmp_path)


def test_notebook_with_a_train_cell_links_its_job(tmp_path: Path) -> None:
    body = ("%load_ext cellship\n")
    notebook = make_notebook(tmp_path / "train.ipynb", body, parameters="steps = 3")
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "%%train --workers 1 --name in-batch\n"
        "import tensorflow as tf\nimport cellship\n"
        "w = tf.summary.create_file_writer(str(cellship.job.logdir() / 'train'))\n"
        "with w.as_default():\n"
        "    for s in range(steps):\n"
        "        tf.summary.scalar('loss', 1.0 / (s + 1), step=s)\n"
        "w.flush()\nprint('trained', steps)"))
    nbformat.write(nb, notebook)
    batch = cellship.batch(str(notebook), grid={"steps": [2, 4]}, parallel=1)
    record = batch.wait()
    assert record.status == "succeeded", [r.error for r in record.runs]
    jobs = {r.index: Store.default().jobs_of_run(batch.id, r.index) for r in record.runs}
    assert all(len(j) == 1 and j[0].status == "succeeded" for j in jobs.values())
    assert [r.recorded["metric:train/loss"] for r in record.runs] == pytest.approx([0.5, 0.25])
    output = nbformat.read(record.runs[1].output_path, as_version=4)
    assert "[worker 0] trained 4" in json.dumps(output.cells[-1].outputs)


def test_kernel_death_fails_only_that_run(tmp_path: Path) -> None:
    body = ("import os, pathlib, signal\n"
            "pathlib.Path(f'pid-{os.getpid()}').write_text('x')\n"
            "if die:\n    os.kill(os.getpid(), signal.SIGKILL)\nprint('alive')")
    notebook = make_notebook(tmp_path / "die.ipynb", body, parameters="die = False")
    batch = cellship.batch(str(notebook), grid={"die": [False, True, False]}, parallel=2)
    runs = batch.record.runs
    assert [r.status for r in runs] == ["succeeded", "failed", "succeeded"]
    assert "kernel died" in runs[1].error
    _no_kernels_left(tmp_path)


def test_ctrl_c_cancels_remaining_runs_and_kills_kernels(tmp_path: Path) -> None:
    body = ("import os, time, pathlib\npathlib.Path(f'pid-{os.getpid()}').write_text('x')\n"
            "time.sleep(120)")
    notebook = make_notebook(tmp_path / "slow.ipynb", body, parameters="i = 0")
    proc = subprocess.Popen([sys.executable, "-m", "cellship.cli", "batch", str(notebook),
                             "--grid", "i=1,2,3,4", "--parallel", "2", "--name", "slow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)  # we send it SIGINT
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pid-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(tmp_path.glob("pid-*"))) == 2, "two kernels should be running"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    runs = cellship.get_batch("slow").runs
    assert [r.status for r in runs] == ["cancelled"] * 4
    assert sum("while running" in r.error for r in runs) == 2
    _no_kernels_left(tmp_path)
    _wait_dead([r.pid for r in runs if r.pid])


def test_detached_batch_and_cancel_from_another_process(tmp_path: Path) -> None:
    body = "import os, time, pathlib\npathlib.Path(f'pid-{os.getpid()}').write_text('x')\ntime.sleep(60)"
    notebook = make_notebook(tmp_path / "bg.ipynb", body, parameters="i = 0")
    started = _cli("batch", str(notebook), "--grid", "i=1,2,3", "--detach", "--name", "bg")
    assert started.returncode == 0, started.stderr
    batch_id = started.stdout.strip()
    batch = cellship.get_batch(batch_id)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("pid-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob("pid-*")), "the first run's kernel should be running"
    cancelled = _cli("batch", "cancel", "bg")
    assert cancelled.returncode == 0, cancelled.stderr
    record = batch.record
    assert record.status == "cancelled"
    assert all(r.status == "cancelled" for r in record.runs)
    _wait_dead([r.pid for r in record.runs if r.pid])
    _no_kernels_left(tmp_path)


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "nb.ipynb", "print(lr)")
    bad_value = _cli("batch", str(notebook), "-p", "lr", "[0.1")
    assert bad_value.returncode == 1 and "does not parse" in bad_value.stderr
    assert "Traceback" not in bad_value.stderr
    missing_kernel = _cli("batch", str(notebook), "--kernel", "nope")
    assert missing_kernel.returncode == 1 and "'nope'" in missing_kernel.stderr
    assert cellship.batches() == []
    unknown = _cli("batch", str(notebook), "-p", "batch_size", "8")
    assert unknown.returncode == 0, unknown.stderr
    assert "batch_size not in the parameters cell" in unknown.stderr
    untagged = make_notebook(tmp_path / "plain.ipynb", "print(lr)", parameters="", tagged=False)
    injected = _cli("batch", str(untagged), "-p", "lr", "0.3")
    assert injected.returncode == 0 and "no cell tagged `parameters`" in injected.stderr
    (run,) = cellship.get_batch("plain").runs
    out = nbformat.read(run.output_path, as_version=4)
    assert "0.3" in json.dumps(out.cells[-1].outputs)
