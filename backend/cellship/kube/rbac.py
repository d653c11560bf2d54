"""The least RBAC cellship needs in one namespace: a Role, its RoleBinding to a
ServiceAccount, as data with the reason for every verb (``cellship rbac`` prints or
applies them).

Why a table written here rather than one collected from the features: the features
(train, runs, deployment, fetch) may not be imported from :mod:`cellship.kube`, and a
reviewer granting rights wants each verb's reason next to it. The table is what the
code calls through the one client (create/get/list/update/delete/watch, a pod's log and
exec), checked against a real API server in tests/k8s/test_rbac_users.py: with exactly
this Role the flows work, and a verb taken away is named by the step that needs it.

Deliberately not granted, since a Role cannot and cellship works without them: listing
nodes and every namespace's pods (the GPU shortfall sum "needs 3, 2 free"; without it a
waiting pod gets the scheduler's own words) and ``--all-namespaces`` listings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from cellship.kube import kinds
from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesConflict, KubernetesNotFound
from cellship.kube.kinds import Kind
from cellship.kube.meta import MANAGED_BY

ROLE_NAME = "cellship"
DEFAULT_SERVICE_ACCOUNT = "default"  # what a notebook pod runs as unless told otherwise
RBAC_GROUP = kinds.ROLE.group


@dataclass(frozen=True)
class Rule:
    """The verbs cellship uses on one resource (``subresource``: ``log``, ``exec``), each
    with the feature that needs it."""

    kind: Kind
    verbs: tuple[tuple[str, str], ...]  # (verb, why)
    subresource: str = ""

    @property
    def resource(self) -> str:
        """As a Role's ``resources`` entry names it: ``pods``, ``pods/log``, ``jobs``."""
        return f"{self.kind.plural}/{self.subresource}" if self.subresource else self.kind.plural

    @property
    def rbac_name(self) -> str:
        """As a 403 names it: ``pods/log``, ``jobs.batch``."""
        return f"{self.kind.resource}/{self.subresource}" if self.subresource else self.kind.resource


RULES: tuple[Rule, ...] = (
    Rule(kinds.CONFIG_MAP, (
        ("create", "%%train / cellship train: the job object (program, bootstrap, shim); "
                   "cellship batch: the run's notebook"),
        ("get", "cancel waits for the job object to go (where watch is refused)"),
        ("list", "cellship jobs --backend kubernetes, %jobs, the panel: jobs by label"),
        ("watch", "cancel waits until the job's objects are gone"),
        ("delete", "cancel and delete: one delete, the garbage collector does the rest"))),
    Rule(kinds.SERVICE, (
        ("create", "%%train: the headless Service that names each replica; cellship "
                   "deploy: the model's Service"),
        ("get", "cellship deploy: is the Service there, and cellship's?"),
        ("update", "cellship deploy of an existing name: the Service follows the model"),
        ("delete", "cellship deploy: undo a half-made deployment; cellship undeploy"))),
    Rule(kinds.POD, (
        ("create", "%%train: one pod per replica"),
        ("get", "cellship fetch: the chief pod is still there to copy files from"),
        ("list", "following a job, batch run or rollout: the pods' phases"),
        ("watch", "logs reconnect when a pod changes; rollouts follow their pods"),
        ("update", "a failed job's chief gets a deadline (activeDeadlineSeconds) to give "
                   "its files up"),
        ("delete", "a job's end stops replicas still running; cancel --now"))),
    Rule(kinds.POD, (("get", "cellship logs, %%train's live log lines"),), "log"),
    Rule(kinds.POD, (
        ("create", "cellship fetch: copy the chief's outputs, TensorBoard logs and backups"),
        ("get", "the same over a websocket (API servers before 1.31 ask for get)")), "exec"),
    Rule(kinds.POD, (
        ("get", "cellship release: the canary's /metrics, through the API server's pod proxy"),
        ("create", "cellship release: the canary's smoke-test predictions (POST), the same "
                   "way")), "proxy"),
    Rule(kinds.SECRET, (
        ("get", "s3:// output dirs, logdirs and deploys: the keys of the --storage-secret, "
                "read at submit to check the bucket, and here to read it"),)),
    Rule(kinds.EVENT, (
        ("list", "why a pod cannot start (unschedulable, image pull, OOM) in plain words"),)),
    Rule(kinds.JOB, (
        ("create", "cellship batch (--executor kubernetes): one Job per run"),
        ("get", "cellship batch: the run's outcome"),
        ("list", "cellship batch: the runs of a batch, and cancel finds them"),
        ("watch", "cellship batch: waiting for a run, and for its cancel"),
        ("delete", "cellship batch: cancel, and retries replace a failed run"))),
    Rule(kinds.DEPLOYMENT, (
        ("create", "cellship deploy: the served model"),
        ("get", "cellship deploy: create or update?"),
        ("list", "cellship deployments, the panel"),
        ("watch", "cellship deploy --wait: the rollout"),
        ("update", "cellship deploy of an existing name: roll out the new image"),
        ("delete", "cellship undeploy"))),
    Rule(kinds.TFJOB, (
        ("create", "%%train --launcher tfjob: the Kubeflow TFJob"),
        ("get", "cancel waits for the TFJob to go (where watch is refused)"),
        ("list", "is the TFJob CRD installed; listing TFJob jobs"),
        ("watch", "cancel waits until the TFJob is gone"),
        ("delete", "cancel of a TFJob job"))),
    Rule(kinds.INFERENCE_SERVICE, (
        ("create", "cellship deploy --kind kserve"),
        ("get", "cellship deploy: create or update?"),
        ("list", "cellship deploy --kind auto: is KServe installed; cellship deployments"),
        ("watch", "cellship deploy --wait: until it is ready"),
        ("update", "cellship deploy of an existing name"),
        ("delete", "cellship undeploy"))),
)


def rules(without: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """The Role's ``rules``, one per resource; ``without`` takes (verb, resource) pairs
    out (``("delete", "pods")``: what a test of a missing verb grants)."""
    dropped = set(without)
    out = []
    for rule in RULES:
        verbs = [v for v, _ in rule.verbs if (v, rule.resource) not in dropped]
        if verbs:
            out.append({"apiGroups": [rule.kind.group], "resources": [rule.resource],
                        "verbs": verbs})
    return out


def role(namespace: str, without: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    return {"apiVersion": kinds.ROLE.api_version, "kind": "Role",
            "metadata": {"name": ROLE_NAME, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "rules": rules(without)}


def role_binding(namespace: str, service_account: str) -> dict[str, Any]:
    return {"apiVersion": kinds.ROLE_BINDING.api_version, "kind": "RoleBinding",
            "metadata": {"name": f"{ROLE_NAME}-{service_account}", "namespace": namespace,
                         "labels": dict(MANAGED_BY)},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": ROLE_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": service_account,
                          "namespace": namespace}]}


def service_account(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)}}


def to_yaml(namespace: str, account: str) -> str:
    """The Role and RoleBinding as ``kubectl apply -f -`` takes them, each verb with a
    comment saying which cellship feature uses it. Written by hand because a YAML
    library drops comments."""
    lines = [f"# The least Role cellship needs in namespace {namespace}, bound to "
             f"ServiceAccount {account}",
             "# (`cellship rbac`). Not granted, since a Role cannot: list nodes and all "
             "namespaces' pods",
             "# (the GPU shortfall sum; without it a waiting pod shows the scheduler's words).",
             "apiVersion: rbac.authorization.k8s.io/v1", "kind: Role", "metadata:",
             f"  name: {ROLE_NAME}", f"  namespace: {namespace}", "  labels:",
             f"    {next(iter(MANAGED_BY))}: {next(iter(MANAGED_BY.values()))}", "rules:"]
    for rule in RULES:
        lines += [f"# {rule.rbac_name}", f'- apiGroups: ["{rule.kind.group}"]',
                  f'  resources: ["{rule.resource}"]', "  verbs:"]
        lines += [f"  - {verb}  # {why}" for verb, why in rule.verbs]
    binding = role_binding(namespace, account)
    lines += ["---", "apiVersion: rbac.authorization.k8s.io/v1", "kind: RoleBinding",
              "metadata:", f"  name: {binding['metadata']['name']}",
              f"  namespace: {namespace}", "  labels:",
              f"    {next(iter(MANAGED_BY))}: {next(iter(MANAGED_BY.values()))}",
              "roleRef:", f"  apiGroup: {RBAC_GROUP}", "  kind: Role", f"  name: {ROLE_NAME}",
              "subjects:", "- kind: ServiceAccount", f"  name: {account}",
              f"  namespace: {namespace}"]
    return "\n".join(lines) + "\n"


def apply(client: KubeAPI, namespace: str, account: str) -> list[str]:
    """Create the ServiceAccount if missing, and create or replace the Role and the
    RoleBinding; one line per object saying what was done."""
    done = []
    try:
        client.get("ServiceAccount", namespace, account)
    except KubernetesNotFound:
        client.create(service_account(namespace, account))
        done.append(f"serviceaccount/{account} created")
    for body in (role(namespace), role_binding(namespace, account)):
        kind, name = body["kind"], body["metadata"]["name"]
        try:
            client.create(body)
            done.append(f"{kind.lower()}/{name} created")
        except KubernetesConflict:
            current = client.get(kind, namespace, name)
            body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            client.replace(body)
            done.append(f"{kind.lower()}/{name} updated")
    return done
