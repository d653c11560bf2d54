"""``%jobs`` lists the cluster's jobs too (through ``cellship.train.api.job_listing``)."""

from __future__ import annotations

import pytest

from cellship.kube import flags
from tests.unit.kube.test_flags import foreign_job
from tests.unit.kube_fake import FakeKube, serve


@pytest.fixture(autouse=True)
def cluster_env(monkeypatch, tmp_path):
    for var in flags.ENV_DEFAULTS.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("CELLSHIP_BACKEND", "kubernetes")  # as a hub admin sets it


def test_jobs_lists_cluster_only_jobs(shell, monkeypatch, capsys) -> None:
    kube = serve(monkeypatch, FakeKube())
    foreign_job(kube, "dddd0001", "theirs", "default", ["Running"])
    shell.run_line_magic("jobs", "")
    out = capsys.readouterr().out
    assert "in the cluster only" in out and "dddd0001" in out and "theirs" in out


def test_jobs_without_a_cluster_says_one_line(shell, capsys) -> None:
    shell.run_line_magic("jobs", "")
    out = capsys.readouterr().out
    assert out.startswith("no jobs yet")
    assert "(cluster jobs not listed: No Kubernetes cluster configured" in out


def test_the_table_widget_marks_cluster_rows(capsys) -> None:
    from cellship.train.api import ClusterJob
    from cellship_magics.jobstable import show_jobs

    job = ClusterJob(id="eeee0001", name="theirs", namespace="ml", status="running",
                     pods={"worker-0": "Running"}, created=None, user="bob")
    box = show_jobs([], [job], note=None)
    (row,) = box.children[0].rows
    assert (row["id"], row["origin"], row["name"], row["duration"]) == (
        "eeee0001", "cluster", "theirs (cluster)", "1 Running")
