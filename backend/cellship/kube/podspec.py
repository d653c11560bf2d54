"""The ONE pod-spec builder: training pods, batch-run Jobs and served models alike.

What every cellship pod shares is decided here once: it runs non-root (``runAsUser``,
default uid 1000, ``runAsNonRoot``), without privilege escalation or capabilities, with
the runtime's default seccomp profile and no service links in its environment; its
scheduling (node selector, tolerations, image pull secrets, service account) and its
container's resources and claim volumes come from the same options everywhere. The
features add only what is theirs (command, env, probes, their own volumes).

Pure functions of plain values: nothing here talks to a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from cellship.kube.options import KubernetesOptions, Volume

CONTAINER = "tensorflow"  # the container name TFJob requires; training and batch pods use it
GPU_RESOURCE = "nvidia.com/gpu"
# The taint GPU node pools carry (GKE, AKS, EKS's GPU AMIs, the NVIDIA GPU operator's docs),
# and the toleration a pod that asks for GPUs gets for it. Kubernetes' own
# ExtendedResourceToleration admission plugin adds exactly this where it is enabled;
# cellship adds it itself so GPU jobs schedule on clusters that do not enable it.
GPU_TOLERATION: Mapping[str, str] = {"key": GPU_RESOURCE, "operator": "Exists",
                                     "effect": "NoSchedule"}


@dataclass(frozen=True)
class Scheduling:
    """Where a pod may run and with which identity (all optional)."""

    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None

    @classmethod
    def of(cls, options: KubernetesOptions) -> "Scheduling":
        return cls(options.node_selector, options.tolerations, options.image_pull_secrets,
                   options.service_account)

    def fields(self) -> dict[str, Any]:
        """The pod spec fields, only those given."""
        out: dict[str, Any] = {}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            out["tolerations"] = [dict(t) for t in self.tolerations]
        if self.image_pull_secrets:
            out["imagePullSecrets"] = [{"name": s} for s in self.image_pull_secrets]
        if self.service_account:
            out["serviceAccountName"] = self.service_account
        return out


def container_security() -> dict[str, Any]:
    """A container's securityContext: no root, no escalation, no capabilities."""
    return {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "privileged": False,
            "capabilities": {"drop": ["ALL"]}}


def pod_security(run_as_user: int) -> dict[str, Any]:
    """A pod's securityContext: every process (and the volumes' group) is ``run_as_user``."""
    return {"runAsNonRoot": True, "runAsUser": run_as_user, "runAsGroup": run_as_user,
            "fsGroup": run_as_user, "seccompProfile": {"type": "RuntimeDefault"}}


def resource_requirements(cpu: str | None, memory: str | None, cpu_limit: str | None,
                          memory_limit: str | None, gpus: int = 0) -> dict[str, Any]:
    """A container's ``resources``: only what was asked for; GPUs as an extended resource,
    which takes limits only."""
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def option_resources(options: KubernetesOptions, gpus: int = 0) -> dict[str, Any]:
    """:func:`resource_requirements` from a job's options."""
    return resource_requirements(options.cpu, options.memory, options.cpu_limit,
                                 options.memory_limit, gpus)


def claim_volume(name: str, claim: str, mount_path: str, read_only: bool = False,
                 sub_path: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One PersistentVolumeClaim: the pod volume and the container's mount of it."""
    volume = {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}
    mount: dict[str, Any] = {"name": name, "mountPath": mount_path, "readOnly": read_only}
    if sub_path:
        mount["subPath"] = sub_path
    return volume, mount


def claim_volumes(volumes: Sequence[Volume]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod volumes and container mounts of the ``--volume`` claims (``pvc-<i>``)."""
    pairs = [claim_volume(f"pvc-{i}", v.claim, v.mount_path, v.read_only, v.sub_path)
             for i, v in enumerate(volumes)]
    return [v for v, _ in pairs], [m for _, m in pairs]


def env_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def container(name: str, image: str, *, command: Sequence[str] | None = None,
              working_dir: str | None = None, env: Mapping[str, str] | None = None,
              ports: Iterable[Mapping[str, Any]] = (), probes: Mapping[str, Any] | None = None,
              resources: Mapping[str, Any] | None = None,
              mounts: Iterable[Mapping[str, Any]] = (),
              pull_policy: str | None = None) -> dict[str, Any]:
    """A container running non-root; fields left empty are left out."""
    body: dict[str, Any] = {"name": name, "image": image}
    if command:
        body["command"] = list(command)
    if working_dir:
        body["workingDir"] = working_dir
    if env:
        body["env"] = env_list(env)
    if ports:
        body["ports"] = [dict(p) for p in ports]
    body |= dict(probes or {})
    body["resources"] = dict(resources or {})
    if mounts:
        body["volumeMounts"] = [dict(m) for m in mounts]
    body["securityContext"] = container_security()
    if pull_policy:
        body["imagePullPolicy"] = pull_policy
    return body


def pod_spec(containers: Sequence[Mapping[str, Any]], *, run_as_user: int,
             volumes: Iterable[Mapping[str, Any]] = (), restart_policy: str | None = None,
             scheduling: Scheduling | None = None, grace_seconds: int | None = None) -> dict[str, Any]:
    """A pod spec: the containers, non-root, no service links (a namespace's many
    services would crowd the environment), scheduled as ``scheduling`` says; a pod that
    asks for GPUs also tolerates the GPU nodes' taint (:data:`GPU_TOLERATION`)."""
    body: dict[str, Any] = {}
    if restart_policy:
        body["restartPolicy"] = restart_policy
    body["containers"] = [dict(c) for c in containers]
    if volumes:
        body["volumes"] = [dict(v) for v in volumes]
    body["securityContext"] = pod_security(run_as_user)
    body["enableServiceLinks"] = False
    if grace_seconds is not None:
        body["terminationGracePeriodSeconds"] = grace_seconds
    body |= (scheduling or Scheduling()).fields()
    if any(GPU_RESOURCE in ((c.get("resources") or {}).get("limits") or {}) for c in containers):
        tolerations = body.setdefault("tolerations", [])
        if not any(t.get("key") == GPU_RESOURCE and t.get("effect") in (None, "NoSchedule")
                   for t in tolerations):
            tolerations.append(dict(GPU_TOLERATION))
    return body
