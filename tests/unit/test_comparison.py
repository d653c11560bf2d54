"""cellship.compare: two jobs' curves overlaid and the options they differ in, from real
event files in the jobs' logdirs (written as TensorFlow frames them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tensorboard.compat.proto import event_pb2

import cellship
from cellship.errors import UsageError
from cellship.inside.eventfile import frame_record
from cellship.store import JobRecord, ReplicaRecord, Store


def _job(tmp: Path, job_id: str, name: str, workers: int, lr: str, losses: list[float]) -> str:
    logdir = tmp / job_id / "tensorboard"
    (logdir / "train").mkdir(parents=True)
    with open(logdir / "train" / "events.out.tfevents.1.host", "wb") as out:
        for step, loss in enumerate(losses):
            event = event_pb2.Event(wall_time=1000.0 + step, step=step)
            event.summary.value.add(tag="epoch_loss", simple_value=loss)
            out.write(frame_record(event.SerializeToString()))
    spec = {"workers": workers, "ps": 0, "gpus": 0, "strategy": "multi_worker_mirrored",
            "max_restarts": 0, "env": {"LR": lr}}
    replica = ReplicaRecord(job_id, "worker", 0, "succeeded", 0, None, 0, str(tmp / "log"), None)
    Store.default().create_job(JobRecord(job_id, name, "succeeded", "local", spec, str(tmp),
                                         str(tmp / "out"), str(logdir), time.time(),
                                         replicas=(replica,)))
    return job_id


def test_compare_overlays_curves_and_lists_what_differs(tmp_path: Path) -> None:
    a = _job(tmp_path, "aaaa1111", "digits", 2, "0.1", [2.0, 1.0, 0.5])
    b = _job(tmp_path, "bbbb2222", "digits", 4, "0.1", [2.5, 1.5])
    comparison = cellship.compare(a, cellship.get_job(b))
    assert comparison.labels == ("digits", "digits #2")  # one name twice: told apart
    assert comparison.options.to_dict("index") == {"workers": {"digits": "2", "digits #2": "4"}}
    assert "env LR" in cellship.compare(a, b, all_options=True).options.index
    metrics = comparison.metrics()
    assert metrics.groupby("job")["value"].apply(list).to_dict() == {
        "digits": [2.0, 1.0, 0.5], "digits #2": [2.5, 1.5]}
    assert set(metrics["run"]) == {"train"} and set(metrics["tag"]) == {"epoch_loss"}
    bundle = comparison._repr_mimebundle_()
    assert bundle["image/png"].startswith(b"\x89PNG")
    assert "workers" in bundle["text/plain"] and "<table" in bundle["text/html"]


def test_compare_says_what_it_takes() -> None:
    with pytest.raises(UsageError, match="takes jobs, job ids or batches"):
        cellship.compare(42)
    with pytest.raises(UsageError, match="at least one job"):
        cellship.compare()
