"""cellship_magics.magics in a real (terminal-less) IPython shell: ``%batch`` takes the same
options as ``cellship batch`` (the Kubernetes flags included); a Ctrl-C cancels what the
cell follows and fails the cell, or only stops following a detached job.
No job or run executes and no cluster is contacted here."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import cellship.runs.api as runs_api
from cellship.errors import JobFailed, UsageError
from cellship.runs.executors import get_executor
from cellship.train import api


@pytest.fixture(autouse=True)
def no_k8s_env(monkeypatch):
    for var in ("CELLSHIP_K8S_IMAGE", "CELLSHIP_K8S_NAMESPACE", "CELLSHIP_K8S_CONTEXT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def created(monkeypatch) -> list[tuple[dict, Any]]:
    """Every batch %batch creates (through the real create()), whose runs then "run"
    without executing anything."""
    calls: list[tuple[dict, Any]] = []
    real_create = runs_api.create

    def create(notebook, **kwargs):
        batch = real_create(notebook, **kwargs)
        calls.append((kwargs, batch))
        return batch

    monkeypatch.setattr(runs_api, "create", create)
    monkeypatch.setattr(runs_api.Batch, "run", lambda self, on_event=None: self.record)
    return calls


def test_batch_takes_the_kubernetes_flags(shell, notebook, created, capsys) -> None:
    batch = shell.run_line_magic(
        "batch", f"{notebook} --backend kubernetes --image nb:1 --namespace ml "
                 "--toleration 'gpu:NoSchedule' --timeout 10m --gpus 1 -p lr 0.5")
    ((kwargs, made),) = created
    assert batch is made
    assert kwargs["backend"] == "kubernetes" and kwargs["parameters"] == {"lr": 0.5}
    assert kwargs["kubernetes"] == {
        "image": "nb:1", "namespace": "ml", "timeout": 600.0, "gpus": 1,
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    assert batch.record.backend == "kubernetes"
    kept = get_executor("kubernetes", runs_api.Store.default()).load_options(batch.record)
    assert (kept["image"], kept["namespace"], kept["timeout"]) == ("nb:1", "ml", 600.0)
    assert "1 run(s), 1 at a time" in capsys.readouterr().out


def test_batch_honours_cellship_backend(shell, notebook, created, monkeypatch) -> None:
    monkeypatch.setenv("CELLSHIP_BACKEND", "kubernetes")
    with pytest.raises(UsageError, match="need an image"):
        shell.run_line_magic("batch", str(notebook))
    assert created == []


def test_batch_refuses_kubernetes_flags_on_the_local_backend(shell, notebook, created) -> None:
    with pytest.raises(UsageError, match="apply to backend='kubernetes'"):
        shell.run_line_magic("batch", f"{notebook} --namespace ml")


def test_batch_bad_option_names_the_valid_ones(shell, notebook) -> None:
    with pytest.raises(UsageError, match="valid options: .*--grid.*--namespace.*--image"):
        shell.run_line_magic("batch", f"{notebook} --launcher tfjob")


def test_interrupted_batch_fails_the_cell(shell, notebook, monkeypatch) -> None:
    def interrupted(self, on_event=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs_api.Batch, "run", interrupted)
    monkeypatch.setattr(runs_api.Batch, "cancel", lambda self: self.record)
    with pytest.raises(UsageError, match=r"Interrupted: batch nb \(\w+\) cancelled; its "
                                         "running kernels were stopped"):
        shell.run_line_magic("batch", str(notebook))


def test_magics_without_a_shell_say_so() -> None:
    from cellship_magics.magics import CellshipMagics

    with pytest.raises(UsageError, match="need an IPython shell"):
        CellshipMagics(shell=None).train("--dry-run", "print(1)\n")


class _Job:
    """A job as the magics follow it; following it is interrupted (a kernel interrupt)."""

    name, id = "sleepy", "abcd1234"

    def __init__(self, detached: bool) -> None:
        self.record = SimpleNamespace(detached=detached, replicas=[SimpleNamespace(label="worker 0")],
                                      status="running")
        self.events: list[str] = []

    def follow(self, emit, tf_noise=False, on_metric=None, on_idle=None):
        emit("[worker 0] tick")
        raise KeyboardInterrupt

    def cancel(self):
        self.events.append("cancel")
        self.record.status = "cancelled"
        return self.record

    def summary(self) -> str:
        return f"job sleepy (abcd1234) {self.record.status}"

    @property
    def status(self) -> str:
        return self.record.status


def test_interrupting_train_cancels_the_job_and_fails_the_cell(shell, monkeypatch, capsys) -> None:
    job = _Job(detached=False)
    monkeypatch.setattr(api, "submit_program", lambda *args, **kwargs: job)
    with pytest.raises(JobFailed, match="cancelled because the cell was interrupted") as info:
        shell.run_cell_magic("train", "--name sleepy", "print('cell')\n")
    assert info.value.status == "cancelled" and job.events == ["cancel"]
    out = capsys.readouterr().out
    assert out.index("[worker 0] tick") < out.index("Interrupted: cancelling job sleepy") < out.index(
        "job sleepy (abcd1234) cancelled")


def test_interrupting_attach_leaves_a_detached_job_running(shell, monkeypatch, capsys) -> None:
    job = _Job(detached=True)
    monkeypatch.setattr(api, "get_job", lambda ref: job)
    shell.run_line_magic("job", "abcd1234 attach")
    assert job.events == [] and job.record.status == "running"
    assert "Stopped following job sleepy (abcd1234); it keeps running" in capsys.readouterr().out
