"""Who made an object: ``cellship.io/user`` on everything cellship creates, from the hub's
user name or the OS user, in a form Kubernetes accepts as a label value."""

from __future__ import annotations

import getpass

import pytest

from cellship.deployment import manifests as deployment
from cellship.kube import meta
from cellship.kube.names import label_value
from cellship.kube.options import KubernetesOptions
from cellship.runs.kubernetes import manifests as batch
from cellship.train.kubernetes import manifests as training
from cellship.train.spec import JobSpec
from tests.unit.deployment.support import spec as deploy_spec


@pytest.mark.parametrize("hub_user, label", [
    ("alice", "alice"),
    ("Alice.Smith@example.org", "Alice.Smith-example.org"),
    ("-_weird name_-", "weird-name"),
    ("x" * 80, label_value("x" * 80)),
])
def test_the_hub_user_is_made_label_safe(monkeypatch, hub_user, label) -> None:
    monkeypatch.setenv(meta.HUB_USER_ENV, hub_user)
    assert meta.current_user() == label and len(label) <= 63


def test_without_a_hub_the_os_user_and_without_one_the_uid(monkeypatch) -> None:
    monkeypatch.delenv(meta.HUB_USER_ENV, raising=False)
    monkeypatch.setattr(getpass, "getuser", lambda: "bob")
    assert meta.current_user() == "bob"

    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found: 1000")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert meta.current_user().startswith("uid-")
    monkeypatch.setenv(meta.HUB_USER_ENV, "@@@")  # nothing label-safe left
    assert meta.current_user() == meta.UNKNOWN_USER


def test_every_feature_labels_what_it_creates_with_the_user(monkeypatch) -> None:
    monkeypatch.setenv(meta.HUB_USER_ENV, "carol")
    identity = training.JobIdentity("ab12cd34", "digits", "ml")
    options = KubernetesOptions(image="tf:1", namespace="ml")
    owner = training.config_map(identity, "print(1)\n", shim={}) | {
        "metadata": {"name": identity.prefix, "uid": "u1"}}
    made = [training.config_map(identity, "print(1)\n", shim={}),
            training.headless_service(identity, owner),
            *training.pods(identity, JobSpec(workers=2), options, owner),
            training.tfjob(identity, JobSpec(workers=1), options),
            deployment.deployment(deploy_spec()), deployment.service(deploy_spec(), {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "digits", "uid": "u2"}})]
    run = batch.RunIdentity("b1", "sweep", 0, 0, "ml")
    made.append(batch.job(run, batch.BatchSettings(options), "python3"))
    made.append(batch.config_map(run, b"{}", {"apiVersion": "batch/v1", "kind": "Job",
                                                "metadata": {"name": run.name, "uid": "u3"}}))
    for obj in made:
        assert meta.user_of(obj) == "carol", obj["kind"]
        assert meta.is_managed(obj)
    templates = [o["spec"]["template"] for o in made if o["kind"] in ("Deployment", "Job")]
    assert len(templates) == 2  # the pods their controllers make carry it too
    assert all(t["metadata"]["labels"][meta.USER_LABEL] == "carol" for t in templates)
    assert meta.user_of({"metadata": {}}) is None  # made before cellship set it
