"""The ONE pod-spec builder: training pods, batch-run Jobs and served models alike.

What every cellship pod shares is decided here once: it runs non-root (``runAsUser``,
default uid 1000, ``runAsNonRoot``), without privilege escalation or capabilities, with
the runtime's default seccomp profile, a read-only root filesystem and no service links in
its environment (the Pod Security Standards' "restricted" profile, plus the read-only root
that profile leaves optional); its scheduling (node selector, tolerations, image pull
secrets, service account) and its container's resources and claim volumes come from the
same options everywhere. The features add only what is theirs (command, env, probes, their
own volumes).

Why a read-only root, and where programs write instead. A container that cannot change
its image cannot plant anything in it for a restart, and every write that matters is on a
volume that is visibly the pod's. Every container gets an emptyDir at :data:`SCRATCH`
(``/tmp``) and ``HOME`` and ``TMPDIR`` pointing at it: Python's tempfile, Keras'
``~/.keras``, Jupyter's runtime files, IPython's profile (and matplotlib's config, in an
image that has it) land there; a uid without a passwd entry would get ``HOME=/``. A
feature's own writable volumes (the training job dir, a claim) come on top; a feature's or
user's ``HOME``/``TMPDIR`` wins over the defaults.

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
SCRATCH = "/tmp"  # every container's writable scratch (an emptyDir), HOME and TMPDIR
SCRATCH_VOLUME = "tmp"
SCRATCH_ENV: Mapping[str, str] = {"HOME": SCRATCH, "TMPDIR": SCRATCH}


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
    """A container's securityContext: no root, no escalation, no capabilities, and an
    image it cannot change (writes go to the scratch and the feature's volumes)."""
    return {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "privileged": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


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


def scratch_volume() -> dict[str, Any]:
    """The pod's scratch emptyDir, mounted at :data:`SCRATCH` in every container that has
    no mount there of its own."""
    return {"name": SCRATCH_VOLUME, "emptyDir": {}}


def _with_scratch(mounts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(m) for m in mounts]
    if not any(m.get("mountPath", "").rstrip("/") == SCRATCH for m in out):
        out.append({"name": SCRATCH_VOLUME, "mountPath": SCRATCH})
    return out


def container(name: str, image: str, *, command: Sequence[str] | None = None,
              working_dir: str | None = None, env: Mapping[str, str] | None = None,
              ports: Iterable[Mapping[str, Any]] = (), probes: Mapping[str, Any] | None = None,
              resources: Mapping[str, Any] | None = None,
              mounts: Iterable[Mapping[str, Any]] = (),
              pull_policy: str | None = None) -> dict[str, Any]:
    """A container running non-root on a read-only root with its scratch at
    :data:`SCRATCH` (``HOME`` and ``TMPDIR`` there unless ``env`` says otherwise); fields
    left empty are left out."""
    body: dict[str, Any] = {"name": name, "image": image}
    if command:
        body["command"] = list(command)
    if working_dir:
        body["workingDir"] = working_dir
    body["env"] = env_list(dict(SCRATCH_ENV) | dict(env or {}))
    if ports:
        body["ports"] = [dict(p) for p in ports]
    body |= dict(probes or {})
    body["resources"] = dict(resources or {})
    body["volumeMounts"] = _with_scratch(mounts)
    body["securityContext"] = container_security()
    if pull_policy:
        body["imagePullPolicy"] = pull_policy
    return body


def pod_spec(containers: Sequence[Mapping[str, Any]], *, run_as_user: int,
             volumes: Iterable[Mapping[str, Any]] = (), restart_policy: str | None = None,
             scheduling: Scheduling | None = None, grace_seconds: int | None = None) -> dict[str, Any]:
    """A pod spec: the containers, non-root, no service links (a namespace's many
    services would crowd the environment), the scratch emptyDir where a container mounts
    it, scheduled as ``scheduling`` says; a pod that asks for GPUs also tolerates the GPU
    nodes' taint (:data:`GPU_TOLERATION`)."""
    body: dict[str, Any] = {}
    if restart_policy:
        body["restartPolicy"] = restart_policy
    body["containers"] = [dict(c) for c in containers]
    pod_volumes = [dict(v) for v in volumes]
    uses_scratch = any(m.get("name") == SCRATCH_VOLUME for c in containers
                       for m in c.get("volumeMounts") or ())
    if uses_scratch and not any(v.get("name") == SCRATCH_VOLUME for v in pod_volumes):
        pod_volumes.append(scratch_volume())
    if pod_volumes:
        body["volumes"] = pod_volumes
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
