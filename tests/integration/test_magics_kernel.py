"""The magics through a real Jupyter kernel (ipykernel via jupyter_client / papermill)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from queue import Empty

import nbformat
import papermill
import pytest
from jupyter_client.manager import KernelManager

import cellship
from cellship.kube.meta import current_user
from cellship.store import Store
from tests.conftest import REPO, job_processes, wait_until_gone
from tests.kernel_output import add_output, is_idle

pytestmark = [pytest.mark.kernel]


class Kernel:
    """A real kernel; ``run`` executes code and returns (stdout+stderr text, error or None)."""

    def __init__(self, cwd: Path, view: str = "text") -> None:
        # CELLSHIP_VIEW=text: these tests read the text view (what a terminal IPython
        # shows); the widget view's tests below pass view="auto", a kernel's default.
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd), env={**os.environ, "CELLSHIP_VIEW": view})
        self.messages: list[dict] = []
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def send(self, code: str) -> str:
        return self.client.execute(code)

    def collect(self, msg_id: str, timeout: float = 120) -> tuple[str, dict | None]:
        out: list[str] = []
        error = None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.client.get_iopub_msg(timeout=1)
            except Empty:
                continue
            self.messages.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            error = add_output(msg, out) or error
            if is_idle(msg):
                return "".join(out), error
        raise AssertionError(f"cell did not finish in {timeout} s; output so far:\n{''.join(out)}")

    def collect_some(self, seconds: float) -> None:
        """Record whatever the kernel publishes for ``seconds`` (see ``messages``)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.messages.append(self.client.get_iopub_msg(timeout=0.1))
            except Empty:
                continue

    def run(self, code: str, timeout: float = 120) -> tuple[str, dict | None]:
        return self.collect(self.send(code), timeout)

    def wait_for_output(self, msg_id: str, pattern: str, timeout: float = 60) -> str:
        seen = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.client.get_iopub_msg(timeout=1)
            except Empty:
                continue
            self.messages.append(msg)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                seen.append(msg["content"]["text"])
                if re.search(pattern, "".join(seen)):
                    return "".join(seen)
        raise AssertionError(f"{pattern!r} never appeared; got:\n{''.join(seen)}")

    def restart(self) -> None:
        self.manager.restart_kernel(now=True)
        self.client.wait_for_ready(timeout=60)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path):
    k = Kernel(tmp_path)
    out, error = k.run("%load_ext cellship")
    assert error is None, out
    yield k
    k.close()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_example_notebook_trains_with_two_workers(tmp_path: Path) -> None:
    """The README's main job: the example notebook, executed by papermill in a real kernel."""
    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "01-distributed-training.ipynb"),
                               str(output), cwd=str(tmp_path), kernel_name="python3",
                               parameters={"EPOCHS": 3})
    nb = nbformat.read(output, as_version=4)
    # stream text, and the text/plain the job view leaves for front ends without widgets
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    # both workers print each Keras line: shown once, marked with both
    assert "[worker 0, worker 1] Epoch 3/3" in text
    assert re.search(r"\[worker 0, worker 1\] 40/40 - .*val_accuracy", text)
    assert "Epoch 4/" not in text  # the papermill parameter reached the workers
    assert re.search(r"job digits-cnn \(\w+\) succeeded", text)
    match = re.search(r"held-out accuracy ([\d.]+)", text)
    assert match and float(match.group(1)) > 0.8
    (job,) = cellship.jobs()
    assert job.status == "succeeded" and job.saved_models()
    # The live chart's last picture stays in the saved notebook.
    train_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%train"))
    pictures = [o for o in train_cell.outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1
    assert "epoch_loss" in pictures[0]["data"]["text/plain"]
    # beside the widget view (its state saved by papermill's nbclient, the final snapshot)
    model_id = pictures[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    snapshot = state[model_id]["state"]["state"]
    assert snapshot["job"]["status"] == "succeeded"
    assert {"train/epoch_loss", "validation/epoch_loss"} <= set(snapshot["curves"])


def test_context_from_earlier_cells_and_ipython_syntax(kernel: Kernel) -> None:
    out, error = kernel.run("import math as m\nimport json\nSCALE = 3\nUNUSED = object()\n"
                            "%env CELLSHIP_TEST_FLAG=1")
    assert error is None, out
    out, error = kernel.run("class Box:\n    def __init__(self, v):\n        self.v = v * SCALE\n"
                            "def area(r):\n    return round(m.pi * r ** 2, 2)")
    assert error is None, out
    out, error = kernel.run("%%train --workers 1\n!pip --version\nprint('area', area(Box(1).v))\n"
                            "print(json.dumps({'ok': True}))", timeout=120)
    assert error is None, out
    assert "[worker 0] area 28.27" in out
    assert '[worker 0] {"ok": true}' in out
    assert "`!pip --version` runs in the kernel only" in out
    program = cellship.jobs()[0].program_path.read_text()
    assert "SCALE = 3" in program and "class Box" in program and "import math as m" in program
    assert "UNUSED" not in program and "pip" not in program and "CELLSHIP_TEST_FLAG" not in program


def test_unshippable_name_is_reported_before_anything_starts(kernel: Kernel) -> None:
    out, error = kernel.run("data = [i * i for i in range(10)]\ndef total():\n    return sum(data)")
    assert error is None
    out, error = kernel.run("%%train\nprint(total())")
    assert error is not None and error["ename"] == "ProgramError"
    text = _plain(out)
    assert "`data` is computed at run time" in text and "--ship data" in text
    assert "Traceback" not in text and "cellship/" not in text  # a sentence, not our internals
    assert Store.default().count_jobs() == 0
    out, error = kernel.run("%%train --ship data\nprint('total', total())")
    assert error is None, out
    assert "[worker 0] total 285" in out


def test_syntax_error_names_the_cell_line(kernel: Kernel) -> None:
    out, error = kernel.run("%%train --workers 2\nx = 1\ny = (2 +\nprint(x)")
    assert error is not None and error["ename"] == "ProgramError"
    assert "line 3 of the cell" in _plain(out)  # as the notebook numbers it (%%train is line 1)
    assert Store.default().count_jobs() == 0


def test_bad_option_is_a_usage_error_naming_valid_options(kernel: Kernel) -> None:
    out, error = kernel.run("%%train --wrokers 2\npass")
    assert error is not None and "UsageError" in error["ename"]
    assert "valid options:" in _plain(out) and "--workers" in _plain(out)


def test_dry_run_prints_program_and_tf_configs(kernel: Kernel) -> None:
    kernel.run("LR = 0.5")
    out, error = kernel.run("%%train --workers 2 --ps 1 --dry-run\nprint(LR)")
    assert error is None, out
    assert "LR = 0.5" in out and "print(LR)" in out
    for label in ("chief:", "worker 0:", "worker 1:", "ps 0:"):
        assert label in out
    assert '"task": {"index": 1, "type": "worker"}' in out
    assert Store.default().count_jobs() == 0


def test_failed_job_shows_worker_traceback_and_fails_the_cell(kernel: Kernel) -> None:
    out, error = kernel.run("%%train --workers 2\nimport cellship\nif cellship.job.task_index() == 1:\n"
                            "    raise RuntimeError('worker one broke')\nimport time\ntime.sleep(60)",
                            timeout=120)
    assert error is not None and error["ename"] == "JobFailed"
    text = _plain(out)
    assert "[worker 1] Traceback (most recent call last)" in text
    assert "[worker 1] RuntimeError: worker one broke" in text
    assert "worker 1 exited with code 1" in text
    (record,) = Store.default().list_jobs()
    assert record.status == "failed"
    wait_until_gone(record.id, within=5)


def test_interrupt_cancels_followed_job_but_not_detached(kernel: Kernel) -> None:
    sleeper = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.2)"
    msg = kernel.send(f"%%train --workers 2 --name followed\n{sleeper}")
    kernel.wait_for_output(msg, r"\[worker 1\] tick 1")
    kernel.manager.interrupt_kernel()
    out, error = kernel.collect(msg, timeout=60)
    assert error is not None and error["ename"] == "JobFailed"
    assert "cancelled because the cell was interrupted" in _plain(out)
    followed = Store.default().find_job("followed")
    assert followed.status == "cancelled"
    wait_until_gone(followed.id, within=5)

    out, error = kernel.run(f"%%train --workers 1 --detach --name detached\n{sleeper}")
    assert error is None and "detached" in out
    detached = Store.default().find_job("detached")
    msg = kernel.send(f"%job {detached.id} attach")
    kernel.wait_for_output(msg, r"tick 2")
    kernel.manager.interrupt_kernel()
    out, error = kernel.collect(msg, timeout=60)
    assert "keeps running" in out
    assert Store.default().get_job(detached.id).status == "running"
    assert job_processes(detached.id)
    out, error = kernel.run(f"%job {detached.id} cancel")
    assert "cancelled" in out
    wait_until_gone(detached.id, within=5)


def test_job_survives_kernel_restart_and_can_be_reattached(kernel: Kernel) -> None:
    out, error = kernel.run("%%train --workers 2 --detach --name survivor\nimport time\n"
                            "for i in range(8):\n    print('step', i, flush=True)\n    time.sleep(0.5)")
    assert error is None, out
    job = Store.default().find_job("survivor")
    kernel.restart()
    assert Store.default().get_job(job.id).status in ("pending", "running")
    out, error = kernel.run("%load_ext cellship")
    assert error is None
    out, error = kernel.run("%jobs")
    assert "survivor" in out
    out, error = kernel.run("%job survivor attach", timeout=120)
    assert error is None, out
    # Replays what happened while no kernel was watching, then follows to the end.
    for i in range(8):
        assert f"[worker 0] step {i}" in out and f"[worker 1] step {i}" in out
    assert re.search(r"job survivor \(\w+\) succeeded", out)
    wait_until_gone(job.id, within=5)


def test_batch_magic_runs_a_sweep_and_returns_the_results(kernel: Kernel, tmp_path: Path) -> None:
    from tests.integration.test_batch import make_notebook

    notebook = make_notebook(tmp_path / "light.ipynb",
                             "import cellship\ncellship.record('double', lr * 2)")
    out, error = kernel.run(f"b = %batch {notebook} --grid lr=1,2 --parallel 2\n"
                            "print(b.results()[['lr', 'double']].to_dict('list'))", timeout=180)
    assert error is None, out
    assert "run 2/2 (lr=2) succeeded" in out
    assert "{'lr': [1, 2], 'double': [2, 4]}" in out
    out, error = kernel.run(f"%batch {notebook} --parallel 0")
    assert error is not None and "--parallel must be a whole number" in _plain(out)


# -- the widget view (a kernel's default) -----------------------------------------------
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _view_messages(kernel: Kernel, msg_id: str) -> tuple[list[dict], list[dict], list[dict]]:
    """(displays and their updates, custom messages to the view, comm opens) of a cell."""
    mine = [m for m in kernel.messages if m["parent_header"].get("msg_id") == msg_id]
    displays = [m["content"] for m in mine if m["msg_type"] in ("display_data", "update_display_data")]
    customs = [m["content"]["data"]["content"] for m in mine if m["msg_type"] == "comm_msg"
               and m["content"]["data"].get("method") == "custom"]
    opens = [m["content"] for m in mine if m["msg_type"] == "comm_open"]
    return displays, customs, opens


@pytest.fixture
def widget_kernel(tmp_path: Path):
    k = Kernel(tmp_path, view="auto")
    out, error = k.run("%load_ext cellship")
    assert error is None, out
    yield k
    k.close()


KERAS_CELL = """%%train --workers 2 --name live
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[:1200], y[:1200], epochs=2, batch_size=50, validation_data=(x[1200:], y[1200:]))
"""


def test_train_cell_shows_the_job_view_with_progress_curves_and_merged_logs(
        widget_kernel: Kernel) -> None:
    msg = widget_kernel.send(KERAS_CELL)
    out, error = widget_kernel.collect(msg, timeout=180)
    assert error is None, out
    assert re.search(r"job live \(\w+\) succeeded", out)  # the summary stays plain text
    assert "[worker 0]" not in out  # the logs are in the view, not printed beside it
    displays, customs, opens = _view_messages(widget_kernel, msg)
    view_id = displays[0]["data"][WIDGET_MIME]["model_id"]
    widget = next(o for o in opens if o["comm_id"] == view_id)
    assert widget["data"]["state"]["job_id"] == cellship.jobs()[0].id
    esm = widget["data"]["state"]["_esm"]  # the shared DOM helpers, then the view's module
    assert esm.startswith("// DOM helpers shared") and "// cellship's live job view" in esm
    # progress bars: each worker's steps of each epoch, from the callback's events
    deltas = [c for c in customs if c["type"] == "delta"]
    steps = {(replica, p["epoch"], p["step"]) for c in deltas
             for replica, p in c.get("progress", {}).items()}
    assert ("worker 0", 2, 24) in steps and ("worker 1", 2, 24) in steps
    last = [c["progress"]["worker 1"] for c in deltas if "worker 1" in c.get("progress", {})][-1]
    assert last["epochs"] == 2 and last["steps"] == 24 and last["rate"] > 0
    # curves: per batch and per epoch, train and validation
    curves: dict[str, list] = {}
    for c in deltas:
        for key, curve in c.get("curves", {}).items():
            curves.setdefault(key, []).extend(curve["steps"])
    assert {"train/batch_loss", "train/epoch_loss", "validation/epoch_loss",
            "validation/epoch_accuracy"} <= set(curves)
    assert curves["train/epoch_loss"] == [0, 1] and max(curves["train/batch_loss"]) == 48
    # logs: the workers' identical lines once, marked with both
    logs: dict[int, dict] = {}
    for c in deltas:
        for entry in c.get("logs", []):
            logs[entry["id"]] = entry
    epoch_lines = [e for e in logs.values() if e["text"] == "Epoch 2/2"]
    assert len(epoch_lines) == 1 and epoch_lines[0]["replicas"] == ["worker 0", "worker 1"]
    assert not any(e["text"].startswith("\x1e") for e in logs.values())
    # the static fallback beside it: the final picture, the log as text
    final = [d for d in displays if d["data"].get(WIDGET_MIME, {}).get("model_id") == view_id][-1]
    assert "image/png" in final["data"] and "epoch_loss" in final["data"]["text/plain"]
    log_text = [d for d in displays if d["data"].get(WIDGET_MIME, {}).get("model_id") == ""][-1]
    assert "[worker 0, worker 1] Epoch 2/2" in log_text["data"]["text/plain"]


def test_detach_keeps_the_job_and_attach_after_restart_rebuilds_the_view(
        widget_kernel: Kernel) -> None:
    sleeper = ("import time\nfor i in range(600):\n    print('tick', i, flush=True)\n"
               "    time.sleep(0.2)")
    msg = widget_kernel.send(f"%%train --workers 2 --name keeper\n{sleeper}")
    end = time.monotonic() + 60
    job = None
    while time.monotonic() < end:  # wait until the view has shown a few ticks
        widget_kernel.collect_some(0.5)
        _, customs, _ = _view_messages(widget_kernel, msg)
        texts = [e["text"] for c in customs for e in c.get("logs", [])]
        if "tick 2" in texts:
            job = Store.default().find_job("keeper")
            break
    assert job is not None, "the view never showed the job's logs"
    # what the view's Detach button does through the Jupyter server: mark, then interrupt
    Store.default().update_job(job.id, detached=True)
    widget_kernel.manager.interrupt_kernel()
    out, error = widget_kernel.collect(msg, timeout=60)
    assert "keeps running" in out
    assert Store.default().get_job(job.id).status == "running" and job_processes(job.id)

    widget_kernel.restart()
    widget_kernel.messages.clear()
    out, error = widget_kernel.run("%load_ext cellship")
    assert error is None, out
    msg = widget_kernel.send(f"%job {job.id} attach")
    end = time.monotonic() + 60
    texts: list[str] = []
    while time.monotonic() < end and "tick 3" not in texts:
        widget_kernel.collect_some(0.5)
        _, customs, _ = _view_messages(widget_kernel, msg)
        texts = list({e["id"]: e["text"] for c in customs for e in c.get("logs", [])}.values())
    # the history from before the restart is replayed into the new view, merged
    assert texts[:2] == ["tick 0", "tick 1"]
    entries = {e["text"]: e for c in customs for e in c.get("logs", [])}
    assert entries["tick 0"]["replicas"] == ["worker 0", "worker 1"]
    # what the view's Cancel button does through the Jupyter server (the kernel is busy
    # following): the backend's cancel; the follower sees the job end and says so
    cellship.get_job(job.id).cancel()
    out, error = widget_kernel.collect(msg, timeout=60)
    assert error is not None and error["ename"] == "JobFailed" and "cancelled" in _plain(out)
    _, customs, _ = _view_messages(widget_kernel, msg)
    assert [c["job"]["status"] for c in customs if "job" in c][-1] == "cancelled"
    wait_until_gone(job.id, within=5)


def test_jobs_table_widget_opens_a_jobs_view_and_a_job_displays_as_its_view(
        widget_kernel: Kernel) -> None:
    out, error = widget_kernel.run("%%train --workers 2 --name shown\nprint('hello from', 1)")
    assert error is None, out
    job = Store.default().find_job("shown")
    widget_kernel.messages.clear()
    msg = widget_kernel.send("%jobs")
    out, error = widget_kernel.collect(msg)
    assert error is None and "shown" in out  # the text table beside the widget
    displays, _, opens = _view_messages(widget_kernel, msg)
    tables = [o for o in opens if o["data"]["state"].get("rows")]
    (table,) = tables
    assert [(r["name"], r["user"]) for r in table["data"]["state"]["rows"]] == [
        ("shown", current_user())]
    assert WIDGET_MIME in displays[0]["data"]
    # a click on the row: the browser sends the table's widget a message
    click = widget_kernel.client.session.msg("comm_msg", {
        "comm_id": table["comm_id"],
        "data": {"method": "custom", "content": {"type": "open", "id": job.id}}})
    widget_kernel.client.shell_channel.send(click)
    widget_kernel.collect_some(5)
    shown = [m for m in widget_kernel.messages
             if m["parent_header"].get("msg_id") == click["header"]["msg_id"]]
    views = [m["content"] for m in shown if m["msg_type"] == "display_data"]
    assert views and WIDGET_MIME in views[0]["data"]
    assert f"job shown ({job.id}) succeeded" in views[0]["data"]["text/plain"]
    # a Job as a cell's value is its view, the history replayed into it
    widget_kernel.messages.clear()
    msg = widget_kernel.send(f"import cellship\ncellship.get_job({job.id!r})")
    widget_kernel.collect(msg)
    widget_kernel.collect_some(3)  # the view's history arrives from a background thread
    result = next(m["content"] for m in widget_kernel.messages
                  if m["msg_type"] == "execute_result" and m["parent_header"].get("msg_id") == msg)
    model_id = result["data"][WIDGET_MIME]["model_id"]
    customs = [m["content"]["data"]["content"] for m in widget_kernel.messages
               if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model_id
               and m["content"]["data"].get("method") == "custom"]
    entries = {e["id"]: e for c in customs for e in c.get("logs", [])}
    assert [(e["text"], e["replicas"]) for e in entries.values()] == [
        ("hello from 1", ["worker 0", "worker 1"])]
    assert [c["job"]["status"] for c in customs if "job" in c][-1] == "succeeded"
