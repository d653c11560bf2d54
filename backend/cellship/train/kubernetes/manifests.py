"""Pure functions: JobSpec + Program + options -> the Kubernetes objects of a job.

Nothing here talks to a cluster, so every manifest is checked by unit tests.

The layout (``launcher="pods"``, the default):

* a **ConfigMap** ``<prefix>`` holding the program, the pod bootstrap and the cellship shim
  package. It is the *job object*: every other object has an ownerReference to it, so
  deleting it garbage-collects the job (cancel is one delete);
* a **headless Service** ``<prefix>`` (``clusterIP: None``, ``publishNotReadyAddresses``)
  that gives each pod a stable DNS name ``<pod>.<prefix>.<ns>.svc``;
* one bare **Pod** per replica with ``hostname``/``subdomain`` set, as the Kubeflow TFJob
  operator does. Why Pods, not batch/v1 Jobs: a Job's pods get random names, and a stable
  per-replica hostname needs one Job per replica anyway (Indexed Jobs, which would give
  one, are 1.21+ and absent from the 1.20 test cluster); a Job's backoffLimit *replaces*
  the pod while TensorFlow needs the same address back. A Pod with ``restartPolicy:
  OnFailure`` restarts its container in place, keeping name, IP and DNS; cellship counts
  ``restartCount`` against ``--max-restarts`` and fails the job beyond it.

``launcher="tfjob"`` makes one kubeflow.org/v1 TFJob instead (the operator makes pods,
services and TF_CONFIG); the ConfigMap is then owned by the TFJob.

Why a shim package: the generated program starts with ``import cellship.inside.bootstrap``
and user code may ``from cellship import job``; the image only promises Python + TensorFlow.
The in-job modules (:mod:`cellship.inside` and ``errors``; stdlib plus optional
TF/tensorboard imports) are copied from the installed cellship at submit time into the
ConfigMap, mounted, and put first on PYTHONPATH by the pod bootstrap, so the pod runs
exactly the version that generated the program, without pip-installing anything in the pod.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cellship.errors import UsageError
from cellship.kube import podspec
from cellship.kube.meta import managed_labels, owner_reference
from cellship.kube.names import job_prefix, label_value, replica_name
from cellship.kube.options import KubernetesOptions
from cellship.kube.podspec import CONTAINER
from cellship.train.spec import JobSpec, Replica
from cellship.train.tfconfig import tf_configs

TF_PORT = 2222
LABEL_JOB_ID = "cellship.io/job-id"
LABEL_JOB_NAME = "cellship.io/job-name"
LABEL_REPLICA_TYPE = "cellship.io/replica-type"
LABEL_REPLICA_INDEX = "cellship.io/replica-index"

MOUNT_ROOT = "/cellship"
PROGRAM_DIR = f"{MOUNT_ROOT}/program"
SHIM_DIR = f"{MOUNT_ROOT}/shim"
JOB_DIR = f"{MOUNT_ROOT}/job"  # writable emptyDir: markers, shipped values, default outputs
BOOTSTRAP_KEY = "bootstrap.py"
PROGRAM_KEY = "program.py"
SHIPPED_KEY = "shipped.pkl"
# The in-job modules (paths relative to the cellship package), shipped as they are.
SHIM_MODULES = ("errors.py", "inside/__init__.py", "inside/bootstrap.py", "inside/job.py",
                "inside/relay.py", "inside/eventfile.py", "inside/keeper.py",
                "inside/sender.py", "inside/objects.py", "inside/backups.py")
KEEPER = "keeper"  # the chief pod's second container (cellship/inside/keeper.py)
KEEPER_SCRIPT = f"{SHIM_DIR}/cellship/inside/keeper.py"
SENDER_SCRIPT = f"{SHIM_DIR}/cellship/inside/sender.py"
OUTPUT_DIR = f"{JOB_DIR}/output"
LOGDIR = f"{JOB_DIR}/tensorboard"
BACKUP_DIR = f"{JOB_DIR}/backup"  # cellship.job.backup_dir()
SHIM_INIT = ('"""cellship shim: the in-job modules only, shipped in the job\'s ConfigMap '
             '(the image need not contain cellship)."""\n'
             "from cellship.inside import job  # `import cellship; cellship.job.is_chief()` "
             "as with the full package\n")
CONFIG_MAP_MAX_BYTES = 1024 * 1024  # etcd's limit on one object; the API refuses more
TFJOB_TYPES = {"chief": "Chief", "worker": "Worker", "ps": "PS"}


@dataclass(frozen=True)
class JobIdentity:
    """What names a job's objects: its cellship id and name, and where they live."""

    job_id: str
    job_name: str
    namespace: str

    @property
    def prefix(self) -> str:
        return job_prefix(self.job_name, self.job_id)

    @property
    def service(self) -> str:
        return self.prefix

    def pod(self, replica: Replica) -> str:
        return replica_name(self.prefix, replica.type, replica.index)

    def address(self, replica: Replica) -> str:
        """The stable DNS name TensorFlow dials: ``<job>-<type>-<i>.<svc>.<ns>.svc:2222``."""
        return f"{self.pod(replica)}.{self.service}.{self.namespace}.svc:{TF_PORT}"


def labels(identity: JobIdentity, replica: Replica | None = None) -> dict[str, str]:
    out = managed_labels() | {LABEL_JOB_ID: label_value(identity.job_id),
                              LABEL_JOB_NAME: label_value(identity.job_name)}
    if replica is not None:
        out |= {LABEL_REPLICA_TYPE: replica.type, LABEL_REPLICA_INDEX: str(replica.index)}
    return out


def selector(identity: JobIdentity) -> str:
    """The label selector of every object of a job."""
    return f"{LABEL_JOB_ID}={label_value(identity.job_id)}"


def shim_files(package_dir: Path | None = None) -> dict[str, str]:
    """The shim package's files (path relative to SHIM_DIR -> text), copied from the
    installed cellship so the pod runs the version that generated its program."""
    root = package_dir or Path(__file__).resolve().parents[2]
    files = {"cellship/__init__.py": SHIM_INIT}
    for module in SHIM_MODULES:
        files[f"cellship/{module}"] = (root / module).read_text()
    return files


def _shim_key(path: str) -> str:
    """ConfigMap keys may not hold '/': ``cellship/inside/job.py`` -> ``shim.cellship.inside.job.py``."""
    return "shim." + path.replace("/", ".")


def config_map(identity: JobIdentity, program_source: str, shipped: bytes | None = None,
               owner: Mapping[str, Any] | None = None,
               shim: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The job object: program, pod bootstrap and shim package."""
    shim = shim_files() if shim is None else shim
    data = {PROGRAM_KEY: program_source,
            BOOTSTRAP_KEY: (Path(__file__).resolve().parents[2] / "inside" / "pod_bootstrap.py").read_text()}
    data |= {_shim_key(path): text for path, text in shim.items()}
    meta: dict[str, Any] = {"name": identity.prefix, "namespace": identity.namespace,
                            "labels": labels(identity)}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                            "data": data}
    if shipped is not None:
        body["binaryData"] = {SHIPPED_KEY: base64.b64encode(shipped).decode()}
    size = sum(len(v.encode()) for v in data.values()) + len(body.get("binaryData", {}).get(SHIPPED_KEY, ""))
    if size > CONFIG_MAP_MAX_BYTES - 16 * 1024:  # leave room for metadata
        raise UsageError(
            f"The job's program and --ship values come to {size / 2**20:.1f} MiB, but the "
            "ConfigMap that carries them to the pods holds at most 1 MiB. Ship less with "
            "--ship (load large data inside the cell instead, e.g. from a volume: the "
            "volumes option mounts a PersistentVolumeClaim).")
    return body


def headless_service(identity: JobIdentity, owner: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": identity.service, "namespace": identity.namespace,
                         "labels": labels(identity),
                         "ownerReferences": [owner_reference(owner)]},
            "spec": {"clusterIP": "None",
                     # Peers must resolve while they start, before any readiness.
                     "publishNotReadyAddresses": True,
                     "selector": {LABEL_JOB_ID: label_value(identity.job_id)},
                     "ports": [{"name": "tf", "port": TF_PORT, "targetPort": TF_PORT}]}}


def chief(spec: JobSpec) -> Replica:
    """The replica whose files are the job's (output dir, logdir, backup): TensorFlow's
    chief, which is worker 0 without a ``chief`` entry."""
    return Replica("chief", 0) if spec.ps else Replica("worker", 0)


def keeps_files(spec: JobSpec, replica: Replica, options: KubernetesOptions) -> bool:
    """Whether this replica's pod gets the keeper container (plain pods' chief: a TFJob's
    pods are the operator's to end, see the module's note)."""
    return options.launcher == "pods" and replica == chief(spec)


def keeper_container(options: KubernetesOptions, mounts: list[dict[str, Any]],
                     job_id: str = "", restarts: bool = False) -> dict[str, Any]:
    """The chief pod's second container: the same image and mounts, no GPUs, waiting for
    cellship to fetch the files (cellship/inside/keeper.py). With ``s3://`` places it also
    uploads them (cellship/inside/objects.py), and it alone gets the store's keys, as env
    from the Secret (see :mod:`.storage`)."""
    from cellship.train.kubernetes import storage

    plain, secret_refs = storage.keeper_env(options, job_id, restarts)
    body = podspec.container(
        KEEPER, options.require_image(), command=[options.python, "-u", KEEPER_SCRIPT],
        working_dir=JOB_DIR, env={"CELLSHIP_JOB_DIR": JOB_DIR, "PYTHONUNBUFFERED": "1",
                                  "CELLSHIP_LINGER": f"{options.fetch_linger:g}"} | plain,
        resources={"requests": {"cpu": "10m", "memory": "32Mi"} if not plain
                   else {"cpu": "50m", "memory": "128Mi"}}, mounts=mounts,
        pull_policy=options.image_pull_policy)
    if secret_refs:
        body["env"] = list(body.get("env") or []) + secret_refs
    return body


# How long a replica stays bound to a node that stopped answering (or is not ready)
# before Kubernetes evicts it and cellship can make it again elsewhere
# (:mod:`.recovery`). Kubernetes' default is 300 s; a training job whose one lost replica
# stalls every other would wait all that time. A toleration the user gives wins.
NODE_LOSS_SECONDS = 20
NODE_LOSS_TOLERATIONS: tuple[dict[str, Any], ...] = tuple(
    {"key": f"node.kubernetes.io/{taint}", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": NODE_LOSS_SECONDS} for taint in ("unreachable", "not-ready"))


def restart_policy(spec: JobSpec) -> str:
    return "OnFailure" if spec.max_restarts > 0 else "Never"


def _env(identity: JobIdentity, spec: JobSpec, options: KubernetesOptions, replica: Replica,
         tf_config: str | None) -> dict[str, str]:
    # The shim goes on PYTHONPATH in the pod bootstrap, in front of the image's own
    # PYTHONPATH (a container env entry would replace the image's: TensorFlow installed
    # on a PYTHONPATH would vanish).
    from cellship.train.kubernetes import storage

    output_dir, logdir = storage.pod_dirs(options)  # an s3:// place is written locally first
    env = {"CELLSHIP_SHIM": SHIM_DIR, "PYTHONUNBUFFERED": "1",
           "CELLSHIP_JOB_ID": identity.job_id, "CELLSHIP_JOB_NAME": identity.job_name,
           "CELLSHIP_JOB_DIR": JOB_DIR,
           "CELLSHIP_OUTPUT_DIR": output_dir,
           "CELLSHIP_LOGDIR": logdir,
           "CELLSHIP_TASK_TYPE": replica.type, "CELLSHIP_TASK_INDEX": str(replica.index),
           "CELLSHIP_PEER_TIMEOUT": f"{options.peer_timeout:g}",
           # Each pod's job dir is its own emptyDir (cellship.job.backup() then keeps a
           # copy per worker: cellship/inside/backups.py).
           "CELLSHIP_PRIVATE_JOB_DIR": "1",
           # The local backend's defaults, so a cell behaves the same on both backends.
           "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    gpus = 0 if replica.type == "ps" else spec.gpus
    if gpus:
        env["CELLSHIP_GPUS"] = str(gpus)
    if keeps_files(spec, replica, options):
        env["CELLSHIP_KEEPER"] = "1"
    return env | dict(spec.env)  # spec validation already refused the reserved names


def _volumes(identity: JobIdentity, options: KubernetesOptions,
             with_shipped: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The job's ConfigMap (program and bootstrap; shim), a writable emptyDir, the claims."""
    items = [{"key": PROGRAM_KEY, "path": PROGRAM_KEY}, {"key": BOOTSTRAP_KEY, "path": BOOTSTRAP_KEY}]
    if with_shipped:
        items.append({"key": SHIPPED_KEY, "path": SHIPPED_KEY})
    shim_items = [{"key": _shim_key(p), "path": p} for p in shim_files()]
    volumes: list[dict[str, Any]] = [
        {"name": "program", "configMap": {"name": identity.prefix, "items": items,
                                          "optional": False, "defaultMode": 0o444}},
        {"name": "shim", "configMap": {"name": identity.prefix, "items": shim_items,
                                       "defaultMode": 0o444}},
        {"name": "job", "emptyDir": {"sizeLimit": options.disk_limit} if options.disk_limit else {}}]
    mounts: list[dict[str, Any]] = [
        {"name": "program", "mountPath": PROGRAM_DIR, "readOnly": True},
        {"name": "shim", "mountPath": SHIM_DIR, "readOnly": True},
        {"name": "job", "mountPath": JOB_DIR}]
    claims, claim_mounts = podspec.claim_volumes(options.volumes)
    return volumes + claims, mounts + claim_mounts


def pod_spec(identity: JobIdentity, spec: JobSpec, options: KubernetesOptions,
             replica: Replica, tf_config: str | None, *, with_shipped: bool) -> dict[str, Any]:
    """The pod spec of one replica (shared by both launchers)."""
    volumes, mounts = _volumes(identity, options, with_shipped)
    # Parameter servers hold variables, not compute: no GPUs for them.
    gpus = 0 if replica.type == "ps" else spec.gpus
    container = podspec.container(
        CONTAINER, options.require_image(),
        command=[options.python, "-u", f"{PROGRAM_DIR}/{BOOTSTRAP_KEY}",
                 f"{PROGRAM_DIR}/{PROGRAM_KEY}"],
        working_dir=JOB_DIR, env=_env(identity, spec, options, replica, tf_config),
        ports=[{"name": "tfjob-port", "containerPort": TF_PORT}],
        resources=podspec.option_resources(options, gpus), mounts=mounts,
        pull_policy=options.image_pull_policy)
    containers = [container]
    if keeps_files(spec, replica, options):
        containers.append(keeper_container(options, mounts, identity.job_id,
                                           restarts=restart_policy(spec) != "Never"))
    scheduling = podspec.Scheduling.of(options)
    given = {t.get("key") for t in scheduling.tolerations}
    scheduling = dataclasses.replace(scheduling, tolerations=tuple(scheduling.tolerations) + tuple(
        t for t in NODE_LOSS_TOLERATIONS if t["key"] not in given))
    return podspec.pod_spec(containers, run_as_user=options.run_as_user, volumes=volumes,
                            restart_policy=restart_policy(spec), scheduling=scheduling)


def replica_addresses(identity: JobIdentity, spec: JobSpec) -> dict[Replica, str]:
    return {r: identity.address(r) for r in spec.replicas()}


def pods(identity: JobIdentity, spec: JobSpec, options: KubernetesOptions,
         owner: Mapping[str, Any], *, with_shipped: bool = False) -> list[dict[str, Any]]:
    """One Pod per replica, in the JobSpec's order, TF_CONFIG with stable DNS names."""
    configs = tf_configs(spec, replica_addresses(identity, spec))
    out = []
    for replica in spec.replicas():
        body = pod_spec(identity, spec, options, replica, configs[replica],
                        with_shipped=with_shipped)
        body |= {"hostname": identity.pod(replica), "subdomain": identity.service}
        out.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": identity.pod(replica), "namespace": identity.namespace,
                                 "labels": labels(identity, replica),
                                 "ownerReferences": [owner_reference(owner)]},
                    "spec": body})
    return out


def tfjob(identity: JobIdentity, spec: JobSpec, options: KubernetesOptions, *,
          with_shipped: bool = False) -> dict[str, Any]:
    """A kubeflow.org/v1 TFJob; the operator creates pods and services and sets TF_CONFIG
    (so none is set here). Its restartPolicy is per replica type; ``runPolicy.backoffLimit``
    bounds restarts of the whole job."""
    counts: dict[str, int] = {}
    for replica in spec.replicas():
        counts[replica.type] = counts.get(replica.type, 0) + 1
    replica_specs = {}
    for rtype, count in counts.items():
        replica = Replica(rtype, 0)
        pod = pod_spec(identity, spec, options, replica, None, with_shipped=with_shipped)
        # The operator sets the replica's identity; the index env would be wrong beyond 0.
        env = pod["containers"][0]["env"]
        pod["containers"][0]["env"] = [e for e in env if e["name"] != "CELLSHIP_TASK_INDEX"]
        pod_labels = labels(identity) | {LABEL_REPLICA_TYPE: rtype}
        replica_specs[TFJOB_TYPES[rtype]] = {
            "replicas": count,
            "restartPolicy": restart_policy(spec),
            "template": {"metadata": {"labels": pod_labels}, "spec": pod}}
    run_policy: dict[str, Any] = {"cleanPodPolicy": "Running", "backoffLimit": spec.max_restarts}
    if spec.timeout:
        run_policy["activeDeadlineSeconds"] = max(1, math.ceil(spec.timeout))  # 0 is invalid
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
            "metadata": {"name": identity.prefix, "namespace": identity.namespace,
                         "labels": labels(identity)},
            "spec": {"runPolicy": run_policy, "tfReplicaSpecs": replica_specs}}


def describe(identity: JobIdentity) -> str:
    """One line for messages: where the job's objects are."""
    return f"{identity.prefix} in namespace {identity.namespace}"

