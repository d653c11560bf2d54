"""The magics through a real Jupyter kernel (ipykernel via jupyter_client / papermill)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from queue import Empty

import nbformat
import papermill
import pytest
from jupyter_client.manager import KernelManager

import cellship
from cellship.store import Store
from tests.conftest import REPO, job_processes, wait_until_gone

pytestmark = [pytest.mark.kernel]


class Kernel:
    """A real kernel; ``run`` executes code and returns (stdout+stderr text, error or None)."""

    def __init__(self, cwd: Path) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd))
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
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(content["data"].get("text/plain", "") + "\n")
            elif kind == "error":
                error = content
                out.append("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out), error
        raise AssertionError(f"cell did not finish in {timeout} s; output so far:\n{''.join(out)}")

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
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "[worker 0] Epoch 3/3" in text and "[worker 1] Epoch 3/3" in text
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
