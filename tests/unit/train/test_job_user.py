"""Who submitted a job, in its dict and the jobs table: the user recorded at a cluster
job's launch (its kubernetes.json, the value of its objects' cellship.io/user label), the
user this process runs for for a local job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellship.kube.meta import current_user
from cellship.store import JobRecord, ReplicaRecord, Store
from cellship.train import api
from cellship.train.kubernetes.backend import STATE_FILE, KubernetesBackend
from cellship.train.local.backend import LocalBackend


def _record(store: Store, job_dir: Path, job_id: str, backend: str) -> JobRecord:
    job_dir.mkdir(parents=True, exist_ok=True)
    record = JobRecord(id=job_id, name=f"exp-{job_id}", status="pending", backend=backend,
                       spec={"workers": 1, "ps": 0, "gpus": 0, "strategy": "single"},
                       job_dir=str(job_dir), output_dir=str(job_dir / "output"),
                       logdir=str(job_dir / "tensorboard"), created=1000.0,
                       replicas=(ReplicaRecord(job_id, "worker", 0, "pending", None, None, 0,
                                               str(job_dir / "worker-0.log"), None),))
    store.create_job(record)
    store.transition(job_id, "failed", ended=1010.0, error="stopped")  # done: no cluster call
    return store.get_job(job_id)


def test_a_local_job_is_the_hub_user_label_safe(store, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice@example.org")
    job = api.Job(_record(store, tmp_path / "a", "aaaa0001", "local"), LocalBackend(store))
    assert job.user == "alice-example.org" == current_user()
    assert job.to_dict()["user"] == "alice-example.org"


def test_a_local_job_without_a_hub_is_the_os_user(store, tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.setenv("LOGNAME", "carol")
    job = api.Job(_record(store, tmp_path / "a", "aaaa0002", "local"), LocalBackend(store))
    assert job.to_dict()["user"] == "carol"


def test_a_cluster_job_is_the_user_recorded_at_its_launch(store, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "someone-else")
    record = _record(store, tmp_path / "k", "bbbb0001", "kubernetes")
    (Path(record.job_dir) / STATE_FILE).write_text(json.dumps({"job_id": record.id,
                                                                "user": "bob"}))
    monkeypatch.setattr(KubernetesBackend, "metrics", lambda self, job: [])  # no cluster
    job = api.Job(record, KubernetesBackend(store))
    assert job.user == "bob"
    assert job.to_dict()["user"] == "bob"


@pytest.mark.parametrize("state", [None, "{}", '{"user": ""}', "not json"])
def test_a_cluster_job_without_a_recorded_user_has_none(store, tmp_path, state):
    record = _record(store, tmp_path / "k", "bbbb0002", "kubernetes")
    if state is not None:
        (Path(record.job_dir) / STATE_FILE).write_text(state)
    assert api.Job(record, KubernetesBackend(store)).user is None


def test_the_jobs_table_has_a_user_column(store, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    local = api.Job(_record(store, tmp_path / "a", "aaaa0003", "local"), LocalBackend(store))
    cluster = api.Job(_record(store, tmp_path / "k", "bbbb0003", "kubernetes"),
                      KubernetesBackend(store))
    header, first, second = api.jobs_table([local, cluster]).splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "BACKEND", "USER", "REPLICAS", "CREATED",
                              "DURATION"]
    assert first.split()[:5] == ["aaaa0003", "exp-aaaa0003", "failed", "local", "alice"]
    assert second.split()[:5] == ["bbbb0003", "exp-bbbb0003", "failed", "kubernetes", "-"]
