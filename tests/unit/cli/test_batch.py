"""cellship.cli.batch: `cellship batch` chooses its backend as `cellship train` does
($CELLSHIP_BACKEND, else local), takes the Kubernetes flags, and Ctrl-C cancels the runs.
No run executes and no cluster is contacted here."""

from __future__ import annotations

import pytest

import cellship.runs.api as runs_api
from cellship.cli import main
from cellship.errors import UsageError
from cellship.store import Store


@pytest.fixture(autouse=True)
def no_k8s_env(monkeypatch):
    for var in ("CELLSHIP_K8S_IMAGE", "CELLSHIP_K8S_NAMESPACE", "CELLSHIP_K8S_CONTEXT"):
        monkeypatch.delenv(var, raising=False)


def test_cellship_backend_kubernetes_reaches_the_kubernetes_checks(notebook, monkeypatch, capsys):
    monkeypatch.setenv("CELLSHIP_BACKEND", "kubernetes")
    assert main(["batch", str(notebook)]) == 1
    err = capsys.readouterr().err
    assert "need an image (--image IMAGE" in err and "Traceback" not in err
    assert Store.default().list_batches() == []  # refused before anything was recorded


def test_the_flag_beats_cellship_backend(notebook, monkeypatch, capsys):
    monkeypatch.setenv("CELLSHIP_BACKEND", "kubernetes")
    assert main(["batch", str(notebook), "--backend", "local", "--namespace", "ml"]) == 1
    assert "batch runs on the 'local' backend take none" in capsys.readouterr().err


def test_cellship_batch_python_api_honours_cellship_backend(notebook, monkeypatch):
    monkeypatch.setenv("CELLSHIP_BACKEND", "kubernetes")
    monkeypatch.setenv("CELLSHIP_K8S_IMAGE", "nb:1")
    # the kernel is the image's: not checked against the kernels installed here
    batch = runs_api.create(notebook, kernel="only-in-the-image")
    assert batch.record.backend == "kubernetes"
    monkeypatch.delenv("CELLSHIP_BACKEND")
    assert runs_api.create(notebook).record.backend == "local"


def test_kubernetes_flags_reach_the_batch(notebook, monkeypatch, capsys):
    seen: dict = {}

    def create(path, **kwargs):
        seen.update(kwargs)
        raise UsageError("stop here")

    monkeypatch.setattr(runs_api, "create", create)
    assert main(["batch", str(notebook), "--backend", "kubernetes", "--image", "nb:1",
                 "--namespace", "ml", "--timeout", "10m", "--gpus", "1", "--cpu", "500m"]) == 1
    assert seen["backend"] == "kubernetes"
    assert seen["kubernetes"] == {"image": "nb:1", "namespace": "ml", "cpu": "500m",
                                  "timeout": 600.0, "gpus": 1}
    assert main(["batch", str(notebook)]) == 1
    assert seen["backend"] is None and seen["kubernetes"] is None  # resolved by create()


def test_training_only_flags_are_not_batch_flags(notebook, capsys):
    with pytest.raises(SystemExit) as info:
        main(["batch", str(notebook), "--launcher", "tfjob"])
    assert info.value.code == 2


class _InterruptedBatch:
    """What create() returns, with a run() that is interrupted as Ctrl-C would."""

    name, id, runs = "slow", "b1234567", (1, 2)

    def __init__(self) -> None:
        self.cancelled = False

    def run(self, on_event):
        raise KeyboardInterrupt  # the coordinator has stopped the runs on its way out

    def cancel(self):
        self.cancelled = True
        return type("R", (), {"status": "cancelled"})()

    def summary(self) -> str:
        return "batch slow (b1234567) cancelled: 2 runs (2 cancelled)"


def test_ctrl_c_cancels_the_batch_and_exits_130(notebook, monkeypatch, capsys):
    batch = _InterruptedBatch()
    monkeypatch.setattr(runs_api, "create", lambda path, **kwargs: batch)
    assert main(["batch", str(notebook), "--parallel", "2"]) == 130
    err = capsys.readouterr().err
    assert "cellship: batch slow (b1234567): 2 run(s), 2 at a time" in err
    assert ("cellship: interrupted; cancelled the remaining runs. batch slow (b1234567) "
            "cancelled") in err
    assert batch.cancelled
