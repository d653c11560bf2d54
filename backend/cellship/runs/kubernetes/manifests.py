"""Pure functions: one batch run -> the batch/v1 Job and ConfigMap that execute it.

Nothing here talks to a cluster, so every manifest is checked by unit tests.

* a **Job** ``<batch>-<id>-<index>`` with one pod that runs papermill inside the image
  (``backoffLimit: 0``: cellship's ``batch retry`` decides about reruns, not the Job
  controller; ``restartPolicy: Never``; ``activeDeadlineSeconds`` from the run timeout;
  no ``ttlSecondsAfterFinished``, alpha in 1.20: cellship deletes the Job itself once it
  has the run's log);
* a **ConfigMap** of the same name, owned by the Job, carrying the parameterised input
  notebook (gzip, ``binaryData``) and :mod:`cellship.inside.podrun` (the pod's command).
  Deleting the Job with foreground propagation takes pod and ConfigMap with it.

Everything runs non-root (``runAsUser``, no privilege escalation, no capabilities) with
``HOME=/tmp`` on a writable emptyDir, so images whose user has no home still run kernels.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cellship.errors import UsageError
from cellship.kube import podspec
from cellship.kube.meta import managed_labels, owner_reference
from cellship.kube.names import dns_label, label_value
from cellship.kube.options import KubernetesOptions
from cellship.kube.podspec import CONTAINER

LABEL_BATCH_ID = "cellship.io/batch-id"
LABEL_BATCH_NAME = "cellship.io/batch-name"
LABEL_RUN_INDEX = "cellship.io/run-index"
LABEL_RUN_ATTEMPT = "cellship.io/run-attempt"
JOB_NAME_LABEL = "job-name"  # set by the Job controller on the pods it makes

MOUNT_DIR = "/cellship/batch"
INPUT_KEY = "input.ipynb.gz"
RUNNER_KEY = "podrun.py"
SCRATCH = podspec.SCRATCH  # its own emptyDir here: HOME, the notebook's cwd and the output notebook
POD_OUTPUT = f"{SCRATCH}/cellship/output.ipynb"
POD_CWD = f"{SCRATCH}/work"
CONFIG_MAP_MAX_BYTES = 1024 * 1024 - 16 * 1024  # etcd's 1 MiB per object, less metadata
JOB_NAME_MAX = 63  # the Job's name is also the value of its pods' job-name label
# Options of a training job that mean nothing for a batch run.
TRAINING_ONLY = ("launcher", "peer_timeout", "logdir", "output_dir", "storage_secret")
BATCH_ONLY = ("timeout", "startup_timeout", "gpus")
DEFAULT_STARTUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class BatchSettings:
    """The ``kubernetes`` options of a batch: the pod options every job has
    (:class:`KubernetesOptions`) plus what only batch runs take:

    ``timeout``: seconds a run may take from its Job's start (``activeDeadlineSeconds``;
    image pull and scheduling count); ``startup_timeout``: seconds a pod that cannot start
    (unschedulable, image pull back-off) is waited for before the run fails; ``gpus``:
    ``nvidia.com/gpu`` per run."""

    options: KubernetesOptions
    timeout: float | None = None
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    gpus: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "BatchSettings":
        data = dict(data or {})
        timeout = data.pop("timeout", None)
        startup = data.pop("startup_timeout", DEFAULT_STARTUP_TIMEOUT)
        gpus = data.pop("gpus", 0)
        given = [k for k in TRAINING_ONLY if data.get(k) not in (None, "pods")]
        if given:
            raise UsageError(f"The Kubernetes option(s) {', '.join(given)} apply to %%train "
                             "jobs, not to batch runs; drop them.")
        for key in TRAINING_ONLY:
            data.pop(key, None)
        for name, value in (("timeout", timeout), ("startup_timeout", startup)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value <= 0):
                raise UsageError(f"The Kubernetes option {name} must be a positive number of "
                                 f"seconds, got {value!r}.")
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise UsageError(f"The Kubernetes option gpus must be a whole number >= 0, got "
                             f"{gpus!r}.")
        options = KubernetesOptions.from_dict(data)
        if not options.image:
            raise UsageError("Batch runs on Kubernetes need an image (--image IMAGE, or "
                             "kubernetes={'image': ...}) with python3, papermill and ipykernel "
                             "installed, and cellship too if the notebook calls "
                             "cellship.record().")
        return cls(options=options, timeout=None if timeout is None else float(timeout),
                   startup_timeout=float(startup), gpus=gpus)

    def to_dict(self) -> dict[str, Any]:
        data = self.options.to_dict()
        for key in TRAINING_ONLY:
            data.pop(key, None)
        return data | {"timeout": self.timeout, "startup_timeout": self.startup_timeout,
                       "gpus": self.gpus}


@dataclass(frozen=True)
class RunIdentity:
    """What names a run's objects: its batch (id, display name), index and attempt."""

    batch_id: str
    batch_name: str
    index: int
    attempt: int
    namespace: str

    @property
    def name(self) -> str:
        """``<batch name>-<batch id>-<index>`` (``-r<attempt>`` on retries, so a retry
        never meets the Job of the attempt before it), at most 63 characters."""
        suffix = f"-{self.batch_id.lower()}-{self.index}"
        if self.attempt:
            suffix += f"-r{self.attempt}"
        return dns_label(self.batch_name, JOB_NAME_MAX - len(suffix)) + suffix


def batch_labels(batch_id: str) -> dict[str, str]:
    return managed_labels() | {LABEL_BATCH_ID: label_value(batch_id)}


def batch_selector(batch_id: str) -> str:
    """Every object of every run of a batch."""
    return f"{LABEL_BATCH_ID}={label_value(batch_id)}"


def labels(run: RunIdentity) -> dict[str, str]:
    return batch_labels(run.batch_id) | {LABEL_BATCH_NAME: label_value(run.batch_name),
                                         LABEL_RUN_INDEX: str(run.index),
                                         LABEL_RUN_ATTEMPT: str(run.attempt)}


def pod_selector(run: RunIdentity) -> str:
    """The pods of this run's Job (the Job controller labels them with its name)."""
    return f"{JOB_NAME_LABEL}={run.name}"


def runner_source() -> str:
    """The pod's command: :mod:`cellship.inside.podrun`, as text (the image's cellship may
    be another version; this one matches the decoder at home)."""
    return (Path(__file__).resolve().parents[2] / "inside" / "podrun.py").read_text()


def check_input_size(input_notebook: bytes) -> None:
    """Refuse, before any object is created, a notebook its ConfigMap cannot carry."""
    size = len(base64.b64encode(input_notebook)) + len(runner_source().encode())
    if size > CONFIG_MAP_MAX_BYTES:
        raise UsageError(
            f"The notebook comes to {size / 2**20:.1f} MiB compressed, but the ConfigMap that "
            "carries it to the pod holds at most 1 MiB: clear its outputs (`jupyter nbconvert "
            "--clear-output --inplace NOTEBOOK`) or move large embedded data out of it.")


def config_map(run: RunIdentity, input_notebook: bytes, owner: Mapping[str, Any]) -> dict[str, Any]:
    """The run's ConfigMap: the gzip of the parameterised notebook and the pod's command,
    owned by the Job (``owner``: the Job as the API returned it, with its uid)."""
    check_input_size(input_notebook)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": run.name, "namespace": run.namespace, "labels": labels(run),
                         "ownerReferences": [owner_reference(owner)]},
            "data": {RUNNER_KEY: runner_source()},
            "binaryData": {INPUT_KEY: base64.b64encode(input_notebook).decode()}}


def _volumes(run: RunIdentity, options: KubernetesOptions) -> tuple[list[dict[str, Any]],
                                                                    list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "batch", "configMap": {"name": run.name, "defaultMode": 0o444,
                                        "items": [{"key": RUNNER_KEY, "path": RUNNER_KEY},
                                                  {"key": INPUT_KEY, "path": INPUT_KEY}]}},
        {"name": "scratch", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "batch", "mountPath": MOUNT_DIR, "readOnly": True},
                                    {"name": "scratch", "mountPath": SCRATCH}]
    claims, claim_mounts = podspec.claim_volumes(options.volumes)
    return volumes + claims, mounts + claim_mounts


def job(run: RunIdentity, settings: BatchSettings, kernel: str) -> dict[str, Any]:
    """The run's batch/v1 Job: one pod, never restarted, papermill in the image."""
    options = settings.options
    volumes, mounts = _volumes(run, options)
    env = {"HOME": SCRATCH, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1",
           "CELLSHIP_BATCH_ID": run.batch_id, "CELLSHIP_BATCH_RUN_INDEX": str(run.index)}
    container = podspec.container(
        CONTAINER,  # the container the client's pod_log reads by default
        options.require_image(),
        command=[options.python, "-u", f"{MOUNT_DIR}/{RUNNER_KEY}", f"{MOUNT_DIR}/{INPUT_KEY}",
                 POD_OUTPUT, kernel, POD_CWD],
        working_dir=SCRATCH, env=env,
        resources=podspec.option_resources(options, settings.gpus), mounts=mounts,
        pull_policy=options.image_pull_policy)
    pod = podspec.pod_spec([container], run_as_user=options.run_as_user, volumes=volumes,
                           restart_policy="Never", scheduling=podspec.Scheduling.of(options))
    spec: dict[str, Any] = {"backoffLimit": 0, "completions": 1, "parallelism": 1,
                            "template": {"metadata": {"labels": labels(run)}, "spec": pod}}
    if settings.timeout:
        spec["activeDeadlineSeconds"] = max(1, int(round(settings.timeout)))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": run.name, "namespace": run.namespace, "labels": labels(run)},
            "spec": spec}


def describe(run: RunIdentity) -> str:
    return f"Job {run.name} in namespace {run.namespace}"

