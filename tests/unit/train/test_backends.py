"""cellship.train.backends: resolving by name, LocalBackend.check_ready, the base lifecycle, and
cellship.errors' IPython rendering."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cloudpickle
import pytest

from cellship import errors
from cellship.errors import BackendError, JobFailed, MissingDependency, UsageError
from cellship.train.backend import Backend
from cellship.train.backends import available, get_backend
from cellship.train.local import backend as local_backend
from cellship.train.local.backend import LocalBackend
from cellship.train.program import build_program
from cellship.train.spec import JobSpec

_real_find_spec = importlib.util.find_spec


def _without(*missing: str):
    def find_spec(name, *args, **kwargs):
        if name in missing:
            return None
        return _real_find_spec(name, *args, **kwargs)
    return find_spec


# -- registry ------------------------------------------------------------------------------

def test_unknown_backend_lists_available():
    with pytest.raises(UsageError) as info:
        get_backend("nope")
    message = str(info.value)
    assert "'nope'" in message and "local" in message


def test_local_backend_by_name(store):
    assert "local" in available()
    backend = get_backend("local", store)
    assert isinstance(backend, LocalBackend) and backend.store is store


# -- check_ready -----------------------------------------------------------------------------

def test_check_ready_without_tensorflow(store, monkeypatch):
    monkeypatch.setattr(local_backend.importlib.util, "find_spec", _without("tensorflow"))
    with pytest.raises(MissingDependency) as info:
        LocalBackend(store).check_ready(JobSpec())
    message = str(info.value)
    assert "TensorFlow is not installed" in message and "pip install" in message


def test_check_ready_without_tf_keras(store, monkeypatch):
    monkeypatch.setattr(local_backend.importlib.util, "find_spec", _without("tf_keras"))
    with pytest.raises(MissingDependency) as info:
        LocalBackend(store).check_ready(JobSpec())
    message = str(info.value)
    assert "tf-keras" in message and "--no-deps" in message
    # Keras 3 needs no tf_keras
    LocalBackend(store).check_ready(JobSpec(env={"TF_USE_LEGACY_KERAS": "0"}))


def test_check_ready_with_both(store, monkeypatch):
    present = {"tensorflow", "tf_keras"}
    monkeypatch.setattr(local_backend.importlib.util, "find_spec",
                        lambda name, *a, **k: object() if name in present else None)
    LocalBackend(store).check_ready(JobSpec())


# -- the base lifecycle, with a backend that launches nothing ------------------------------

class _RecordingBackend(Backend):
    name = "recording"

    def __init__(self, store, fail: Exception | None = None) -> None:
        super().__init__(store)
        self.fail = fail
        self.launched: list[str] = []

    def _launch(self, job):
        if self.fail is not None:
            raise self.fail
        self.launched.append(job.id)

    def refresh(self, job):
        return self.store.get_job(job.id)

    def logs(self, job, follow=False, tf_noise=False):
        return iter(())

    def cancel(self, job):
        self.store.transition(job.id, "cancelled")
        return self.store.get_job(job.id)


def test_submit_records_the_job_and_writes_its_files(store, cellship_home):
    backend = _RecordingBackend(store)
    program = build_program("print(data)\n", (), {"data": [1, 2]}, ship=["data"])
    record = backend.submit(JobSpec(workers=2), program, source="cell")
    assert backend.launched == [record.id]
    assert record.name == "train-1" and record.status == "pending" and record.backend == "recording"
    job_dir = Path(record.job_dir)
    assert job_dir.parent == cellship_home / "jobs"
    assert (job_dir / "program.py").read_text() == program.source
    assert json.loads((job_dir / "spec.json").read_text())["workers"] == 2
    with open(job_dir / "shipped.pkl", "rb") as handle:
        assert cloudpickle.load(handle) == {"data": [1, 2]}
    assert [(r.label, r.state) for r in record.replicas] == [("worker 0", "pending"),
                                                             ("worker 1", "pending")]
    assert record.replicas[1].log_path == str(job_dir / "logs" / "worker-1.log")
    second = backend.submit(JobSpec(name="named"), build_program("pass\n"))
    assert second.name == "named" and second.id != record.id


def test_submit_marks_the_job_failed_when_launch_fails(store):
    backend = _RecordingBackend(store, fail=OSError("no such interpreter"))
    with pytest.raises(BackendError, match="no such interpreter"):
        backend.submit(JobSpec(), build_program("pass\n"))
    [job] = store.list_jobs()
    assert job.status == "failed" and "no such interpreter" in job.error


def test_delete_refuses_a_running_job(store):
    backend = _RecordingBackend(store)
    record = backend.submit(JobSpec(), build_program("pass\n"))
    store.transition(record.id, "running")
    with pytest.raises(BackendError, match="cancel it before deleting"):
        backend.delete(record)
    backend.cancel(record)
    backend.delete(record)
    assert store.count_jobs() == 0 and not Path(record.job_dir).exists()


# -- errors --------------------------------------------------------------------------------

def test_render_traceback_shows_the_message_lines():
    err = UsageError("--workers must be >= 1, got 0.\nFix the option and run again.")
    lines = err._render_traceback_()
    assert len(lines) == 2
    assert "UsageError" in lines[0] and lines[0].endswith(": --workers must be >= 1, got 0.")
    assert lines[1] == "Fix the option and run again."


def test_render_traceback_of_an_empty_message():
    lines = errors.BackendError()._render_traceback_()
    assert len(lines) == 1 and "BackendError" in lines[0]


def test_a_notebook_shows_every_cellship_error_as_its_sentence():
    """Each error class cellship raises renders in IPython as name + message, no traceback."""
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert {UsageError, JobFailed, BackendError, MissingDependency, errors.StoreError} <= set(classes)
    for cls in classes:
        err = cls("job x failed", "abcd1234", "failed") if cls is JobFailed else cls("Do this.")
        lines = err._render_traceback_()
        assert len(lines) == 1 and cls.__name__ in lines[0], cls
        assert lines[0].endswith(": " + str(err)), cls
    failed = JobFailed("job x failed", "abcd1234", "failed")
    assert (str(failed), failed.job_id, failed.status) == ("job x failed", "abcd1234", "failed")
