"""`cellship rbac`: the least Role, every verb with its reason, as YAML kubectl applies,
and a training job's whole flow under exactly that Role (the fake refuses the rest)."""

from __future__ import annotations

import itertools

import pytest
import yaml

from cellship.cli.main import main
from cellship.kube import kinds, rbac
from cellship.kube.errors import KubernetesForbidden
from cellship.kube.options import KubernetesOptions
from cellship.train.kubernetes.backend import KubernetesBackend
from cellship.train.program import build_program
from cellship.train.spec import JobSpec
from tests.unit.kube_fake import FakeKube, serve

VERBS = ("create", "get", "list", "watch", "update", "delete")
NS = "alice"


def granted(role: dict) -> set[tuple[str, str]]:
    return {(verb, resource) for rule in role["rules"] for resource in rule["resources"]
            for verb in rule["verbs"]}


def only_the_role(fake: FakeKube, without: tuple[tuple[str, str], ...] = ()) -> FakeKube:
    """The fake refuses every (verb, resource) the Role does not grant, by RBAC names."""
    allowed = {(verb, rule.rbac_name) for rule in rbac.RULES for verb, _ in rule.verbs
               if (verb, rule.resource) not in without}
    resources = [k.resource for k in kinds.KINDS.values()] + ["pods/log", "pods/exec"]
    for verb, resource in itertools.product(VERBS, resources):
        if (verb, resource) not in allowed:
            fake.deny(verb, resource)
    return fake


def test_the_yaml_is_the_role_and_binding_with_a_reason_for_every_verb() -> None:
    text = rbac.to_yaml(NS, "notebook")
    role, binding = yaml.safe_load_all(text)
    assert role == rbac.role(NS) and binding == rbac.role_binding(NS, "notebook")
    verb_lines = [line for line in text.splitlines() if line.startswith("  - ")]
    assert len(verb_lines) == sum(len(r.verbs) for r in rbac.RULES)
    assert all("  # " in line and len(line.split("  # ")[1]) > 10 for line in verb_lines)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "notebook",
                                    "namespace": NS}]


def test_the_role_is_least_namespaced_and_made_of_known_kinds() -> None:
    for rule in rbac.RULES:
        assert rule.kind in kinds.KINDS.values() and rule.kind.namespaced
        assert rule.subresource in ("", "log", "exec", "proxy")
        assert {v for v, _ in rule.verbs} <= set(VERBS), rule
        assert len({v for v, _ in rule.verbs}) == len(rule.verbs)  # no verb twice
    assert not any(r.kind is kinds.NODE for r in rbac.RULES)  # a Role cannot grant nodes
    # Secrets are only read (an object store's keys), never listed, written or watched.
    assert {v for r in rbac.RULES if r.kind is kinds.SECRET for v, _ in r.verbs} == {"get"}
    no_delete = granted(rbac.role(NS, without=[("delete", "pods")]))
    assert ("delete", "pods") not in no_delete and ("create", "pods") in no_delete


def test_a_training_job_runs_follows_and_cancels_with_exactly_the_role(store) -> None:
    fake = only_the_role(FakeKube())
    backend = KubernetesBackend(store, KubernetesOptions(image="tf:1", namespace=NS),
                                client_factory=lambda options: fake)
    job = backend.submit(JobSpec(backend="kubernetes", name="digits"),
                         build_program("print(1)\n"))
    pod = f"digits-{job.id}-worker-0"
    fake.logs[pod] = ["epoch 1"]
    fake.set_pod(NS, pod, {"phase": "Running", "containerStatuses": [
        {"name": "tensorflow", "restartCount": 0, "state": {"running": {}}}]})
    assert backend.refresh(job).status == "running"
    assert [line.text for line in backend.logs(job)] == ["epoch 1"]
    assert [j["id"] for j in backend.discover(namespace=NS)] == [job.id]
    assert backend.cancel(job).status == "cancelled"
    assert fake.objects == {}


def test_without_delete_on_configmaps_cancel_names_the_verb(store) -> None:
    fake = only_the_role(FakeKube(), without=(("delete", "configmaps"),))
    backend = KubernetesBackend(store, KubernetesOptions(image="tf:1", namespace=NS),
                                client_factory=lambda options: fake)
    job = backend.submit(JobSpec(backend="kubernetes", name="digits"),
                         build_program("print(1)\n"))
    with pytest.raises(KubernetesForbidden) as refused:
        backend.cancel(job)
    assert (refused.value.verb, refused.value.resource, refused.value.namespace) == (
        "delete", "configmaps", NS)
    assert str(refused.value).startswith(
        f"Kubernetes refused: you may not delete configmaps in namespace {NS} (403 Forbidden).")


def test_cli_prints_yaml_without_a_cluster_and_applies_with_one(monkeypatch, tmp_path,
                                                                capsys) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("CELLSHIP_K8S_NAMESPACE", raising=False)
    assert main(["rbac"]) == 0
    role, _ = yaml.safe_load_all(capsys.readouterr().out)
    assert role["metadata"]["namespace"] == "default"
    fake = serve(monkeypatch, FakeKube())
    assert main(["rbac", "-n", NS, "--service-account", "notebook", "--apply"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"cellship: serviceaccount/notebook created in namespace {NS}",
                   f"cellship: role/cellship created in namespace {NS}",
                   f"cellship: rolebinding/cellship-notebook created in namespace {NS}"]
    assert fake.get("Role", NS, "cellship")["rules"] == rbac.rules()
    assert main(["rbac", "-n", NS, "--service-account", "notebook", "--apply"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"cellship: role/cellship updated in namespace {NS}",
        f"cellship: rolebinding/cellship-notebook updated in namespace {NS}"]
    assert main(["rbac", "-n", "Bad_NS"]) == 1
    assert "Namespace 'Bad_NS' is not valid" in capsys.readouterr().err


def test_a_batch_sweep_runs_with_exactly_the_role(tmp_path, store, monkeypatch) -> None:
    from cellship.runs.kubernetes import executor
    from tests.unit.kube_fake import FakeKubeWithJobs
    from tests.unit.runs.kubernetes.test_executor import k8s_batch, papermill_pod

    monkeypatch.setattr(executor, "POLL_SECONDS", 0.01)
    fake = serve(monkeypatch, only_the_role(FakeKubeWithJobs(papermill_pod())))
    record = k8s_batch(tmp_path, store).run()
    assert record.status == "succeeded", [r.error for r in record.runs]
    assert fake.names("Job") == []  # each Job deleted once its notebook came home
    assert fake.denied  # the fake did refuse what the Role leaves out
