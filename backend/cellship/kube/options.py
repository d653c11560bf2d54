"""The Kubernetes options of a job, read from one plain dict.

They live in the job's spec dict under the key ``"kubernetes"`` (so they are stored with
the job and shown by ``cellship status --json``), or are given to ``KubernetesBackend``
directly; the magic/CLI flags map one-to-one onto these keys:

================== ================================================================
key                meaning
================== ================================================================
namespace          namespace of every object (default: the context's, else "default")
image              container image with Python + TensorFlow (cellship need not be in it;
                   default: cellship.train.kubernetes.default_image)
registry           registry (host[/path]) the cluster pulls from, where cellship pushes the
                   images it makes for jobs (the default image)
context            kubeconfig context (default: current context; in a pod: in-cluster)
launcher           "pods" (default: one pod per replica + headless Service) or "tfjob"
node_selector      {label: value} every pod must match
tolerations        list of Kubernetes toleration dicts, as in a pod spec
image_pull_secrets list of Secret names
service_account    serviceAccountName of the pods
volumes            list of {"claim": PVC name, "mount_path": "/data", "read_only": false,
                   "sub_path": optional}
cpu, memory        requests per replica (e.g. "2", "4Gi"); limits stay unset except GPUs
cpu_limit,
memory_limit       optional limits
disk_limit         limit of each replica's job dir (an emptyDir's sizeLimit, e.g. "10Gi"):
                   over it the kubelet evicts the pod, and cellship makes it again
logdir, output_dir paths inside the pods (e.g. on a PVC) for TensorBoard logs / outputs,
                   or ``s3://bucket/prefix`` (any S3-compatible store; needs storage_secret)
storage_secret     Secret with the object store's keys (AWS_ACCESS_KEY_ID,
                   AWS_SECRET_ACCESS_KEY, optional AWS_ENDPOINT_URL, AWS_REGION; see
                   cellship.storage.credentials), for s3:// output_dir / logdir
image_pull_policy  e.g. "Never" for images imported into the node (default: unset)
peer_timeout       seconds the pod bootstrap waits for peer DNS names (default 300)
run_as_user        uid the containers run as (non-root; default 1000)
python             the image's Python command (default "python3")
fetch_linger       seconds the chief pod waits after its program for cellship to copy
                   its files home (default 600; then the files go with the pod)
================== ================================================================

``--gpus N`` comes from the JobSpec, not from here: ``nvidia.com/gpu: N`` limits on every
replica except parameter servers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from cellship.errors import UsageError
from cellship.kube.names import check_namespace, check_object_name

LAUNCHERS = ("pods", "tfjob")
S3_SCHEME = "s3://"  # cellship.storage.url parses it; the options only tell it apart


@dataclass(frozen=True)
class Volume:
    """A PersistentVolumeClaim mounted into every replica (data, logdirs, outputs)."""

    claim: str
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None


@dataclass(frozen=True)
class KubernetesOptions:
    namespace: str | None = None
    image: str | None = None
    registry: str | None = None
    context: str | None = None
    launcher: str = "pods"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    volumes: tuple[Volume, ...] = ()
    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None
    disk_limit: str | None = None
    logdir: str | None = None
    output_dir: str | None = None
    image_pull_policy: str | None = None
    peer_timeout: float = 300.0
    run_as_user: int = 1000
    python: str = "python3"
    fetch_linger: float = 600.0
    storage_secret: str | None = None

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"--launcher {self.launcher!r} is not known; use one of "
                             f"{', '.join(LAUNCHERS)}.")
        if self.namespace is not None:
            check_namespace(self.namespace)
        if self.fetch_linger < 0:
            raise UsageError(f"fetch_linger must be 0 or more seconds, got {self.fetch_linger!r}.")
        if self.peer_timeout <= 0:
            raise UsageError(f"peer_timeout must be positive, got {self.peer_timeout!r}.")
        if not isinstance(self.run_as_user, int) or self.run_as_user <= 0:
            raise UsageError("run_as_user must be a non-root uid (> 0): cellship's pods never "
                             "run as root.")
        for secret in self.image_pull_secrets:
            check_object_name(secret, "image_pull_secrets entry")
        if self.service_account:
            check_object_name(self.service_account, "service_account")
        self._check_storage()
        for volume in self.volumes:
            check_object_name(volume.claim, "PersistentVolumeClaim")
            if not volume.mount_path.startswith("/"):
                raise UsageError(f"Volume {volume.claim!r}: mount_path must be absolute, got "
                                 f"{volume.mount_path!r}.")

    def _check_storage(self) -> None:
        urls = [f"{flag} {value}" for flag, value in (("--k8s-output-dir", self.output_dir),
                                                     ("--k8s-logdir", self.logdir))
                if isinstance(value, str) and value.startswith(S3_SCHEME)]
        if self.storage_secret:
            check_object_name(self.storage_secret, "--storage-secret")
        if urls and not self.storage_secret:
            raise UsageError(f"{' and '.join(urls)} writes to object storage, which needs "
                             "--storage-secret NAME: a Secret in the job's namespace with "
                             "the store's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                             "(for a store other than AWS) AWS_ENDPOINT_URL. cellship never "
                             "copies keys from your environment into the cluster.")
        if self.storage_secret and not urls:
            raise UsageError(f"--storage-secret {self.storage_secret} names the keys of an object "
                             "store, but neither --k8s-output-dir nor --k8s-logdir is an s3:// "
                             "location: give one (e.g. --k8s-output-dir s3://BUCKET/runs), or "
                             "drop --storage-secret.")
        if urls and self.launcher != "pods":
            raise UsageError(f"{urls[0]}: s3:// output needs the default launcher (plain "
                             "pods), whose chief pod uploads the files; drop --launcher tfjob, "
                             "or write to a --volume.")

    def require_image(self) -> str:
        if not self.image:
            raise UsageError("--backend kubernetes needs --image (or $CELLSHIP_K8S_IMAGE): a "
                             "container image with Python, TensorFlow and what the program "
                             "imports; cellship itself need not be installed in it.")
        return self.image

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["node_selector"] = dict(self.node_selector)
        data["tolerations"] = [dict(t) for t in self.tolerations]
        data["image_pull_secrets"] = list(self.image_pull_secrets)
        data["volumes"] = [asdict(v) for v in self.volumes]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "KubernetesOptions":
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise UsageError(f"Unknown Kubernetes option(s) {sorted(unknown)}; known: "
                             f"{', '.join(sorted(cls.__dataclass_fields__))}.")
        data["tolerations"] = tuple(dict(t) for t in data.get("tolerations") or ())
        data["image_pull_secrets"] = tuple(data.get("image_pull_secrets") or ())
        data["node_selector"] = dict(data.get("node_selector") or {})
        volumes = []
        for v in data.get("volumes") or ():
            if isinstance(v, Volume):
                volumes.append(v)
            elif not isinstance(v, Mapping) or "claim" not in v or "mount_path" not in v:
                raise UsageError(f"Volume {v!r} must be a dict with 'claim' (a PVC name) and "
                                 "'mount_path', e.g. {'claim': 'data', 'mount_path': '/data'}.")
            else:
                volumes.append(Volume(**v))
        data["volumes"] = tuple(volumes)
        return cls(**data)

    def merged(self, overrides: Mapping[str, Any] | None) -> "KubernetesOptions":
        """These options with ``overrides`` (a spec's ``kubernetes`` dict) on top."""
        if not overrides:
            return self
        return KubernetesOptions.from_dict(self.to_dict() | dict(overrides))
