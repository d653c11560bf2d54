"""``%jobs``'s listing through the API layer: the store's jobs plus the cluster's jobs the
store lacks (the fake Kubernetes client), and one line when the cluster is not there."""

from __future__ import annotations

import time

import pytest

from cellship.store import Store
from cellship.train import api
from cellship.train.kubernetes import backend as kb
from cellship.train.program import build_program
from cellship.train.spec import JobSpec
from tests.conftest import hide_clusters
from tests.unit.kube.test_flags import foreign_job
from tests.unit.kube_fake import FakeKube, serve


@pytest.fixture(autouse=True)
def no_cluster_env(monkeypatch, tmp_path):
    hide_clusters(monkeypatch, tmp_path)


def test_cluster_only_jobs_are_added_and_marked(monkeypatch) -> None:
    kube = serve(monkeypatch, FakeKube(tfjob_crd=True))
    store = Store.default()
    mine = kb.KubernetesBackend(store).submit(
        JobSpec(backend="kubernetes", name="mine"), build_program("print(1)\n"),
        extra={"kubernetes": {"image": "tf:1"}})
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    foreign_job(kube, "cccc0001", "theirs", "default", ["Running", "Pending"])
    foreign_job(kube, "cccc0002", "far", "other", ["Running"])  # another namespace: not here
    listing = api.job_listing(store=store, include_cluster=True)
    assert [j.id for j in listing.jobs] == [mine.id] and listing.note is None
    (theirs,) = listing.cluster
    assert (theirs.id, theirs.name, theirs.namespace, theirs.user, theirs.origin) == (
        "cccc0001", "theirs", "default", "bob", "cluster")
    assert theirs.to_dict()["pods"] == {"worker-0": "Running", "worker-1": "Pending"}
    text = api.listing_text(listing)
    assert mine.id in text and "in the cluster only" in text and "1 Running, 1 Pending" in text
    assert api.job_listing(store=store, include_cluster=True, status="succeeded").cluster == []


def test_cluster_is_asked_only_when_configured(monkeypatch, tmp_path) -> None:
    assert api.cluster_configured() is False
    assert api.job_listing() == api.JobListing([], [], None)
    monkeypatch.setenv("CELLSHIP_BACKEND", "kubernetes")
    assert api.cluster_configured() is True
    listing = api.job_listing()  # no kubeconfig: one line, no error
    assert listing.cluster == [] and listing.note is not None
    assert listing.note.startswith("cluster jobs not listed: No Kubernetes cluster configured")
    assert "\n" not in listing.note
    assert api.listing_text(listing).endswith(f"({listing.note})")
    monkeypatch.delenv("CELLSHIP_BACKEND")
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert api.cluster_configured() is True


class SlowKube(FakeKube):
    def list(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(2)
        return super().list(*args, **kwargs)


def test_an_unanswering_cluster_costs_the_timeout_only(monkeypatch) -> None:
    serve(monkeypatch, SlowKube())
    began = time.monotonic()
    listing = api.job_listing(include_cluster=True, timeout=0.2)
    assert time.monotonic() - began < 1.0
    assert listing.note == "cluster jobs not listed: the cluster did not answer within 0.2 s"


def test_a_refusal_is_one_line(monkeypatch) -> None:
    kube = serve(monkeypatch, FakeKube())
    kube.deny("list", "configmaps")
    listing = api.job_listing(include_cluster=True)
    assert listing.cluster == [] and listing.note is not None
    assert "\n" not in listing.note and "forbidden" in listing.note.lower()
