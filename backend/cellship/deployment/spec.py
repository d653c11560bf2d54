"""What to deploy, validated once at the edge (before anything is sent to a cluster).

A :class:`DeploySpec` holds everything the manifests need. It is built by
:func:`cellship.deployment.deploy` from keyword arguments (the CLI's flags map one-to-one
onto them), so a wrong value is refused with the rule and an example, not by the API server
half-way through a rollout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from cellship.errors import UsageError
from cellship.kube.names import check_namespace, check_object_name, dns_label, is_dns_label

PORT = 8501  # TF Serving's REST port; cellship's server and `cellship build` images use it too
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
KINDS = ("auto", "deployment", "kserve")
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # as cellship.serve.export names them


@dataclass(frozen=True)
class VolumeMount:
    """A read-only volume in the server's pods: an absolute ``source`` is a hostPath on the
    node (single-node and test clusters), anything else names a PersistentVolumeClaim."""

    source: str
    mount_path: str

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith("/")

    @classmethod
    def parse(cls, text: str) -> "VolumeMount":
        """``SOURCE:MOUNT_PATH`` (``/srv/models:/models`` or ``models-pvc:/models``)."""
        source, sep, mount = text.partition(":")
        if not sep or not source or not mount.startswith("/"):
            raise UsageError(f"--volume {text!r} should be SOURCE:MOUNT_PATH with an absolute "
                             "mount path: a PersistentVolumeClaim name (models-pvc:/models) or "
                             "a directory on the node (/srv/models:/models).")
        return cls(source.rstrip("/") or "/", mount.rstrip("/") or "/")


@dataclass(frozen=True)
class DeploySpec:
    """One served model on Kubernetes. ``model_name`` is the name in ``/v1/models/NAME``;
    ``model_path`` (optional) makes the pods run ``cellship serve MODEL_PATH`` from the
    image's own cellship instead of the image's command."""

    name: str
    image: str
    model_name: str
    port: int = PORT
    replicas: int = 1
    namespace: str = "default"
    model_path: str | None = None
    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None
    gpus: int = 0
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[VolumeMount, ...] = ()
    run_as_user: int = 1000
    python: str = "python3"
    # An s3:// SavedModel, downloaded into model_path by an init step (deployment/source.py)
    # with the keys of the Secret storage_secret.
    model_url: str | None = None
    storage_secret: str | None = None
    # More labels and annotations on the Deployment and its pods (``cellship release``
    # marks each version's Deployment with the model, version and release it belongs to).
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    extra_annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_namespace(self.namespace)
        if not self.image or any(c.isspace() for c in self.image):
            raise UsageError(f"Image {self.image!r} is not an image reference; give one like "
                             "registry.example.com/team/digits:v1.")
        if not _MODEL_RE.match(self.model_name):
            raise UsageError(f"--model-name {self.model_name!r} cannot appear in /v1/models/NAME: "
                             "use 1-128 letters, digits, '-', '_' or '.' (e.g. digits).")
        if not 1 <= self.port <= 65535:
            raise UsageError(f"--port must be 1-65535, got {self.port}.")
        if self.replicas < 1:
            raise UsageError(f"--replicas must be at least 1, got {self.replicas} (undeploy "
                             "removes a deployment).")
        if self.gpus < 0:
            raise UsageError(f"--gpus must be 0 or more, got {self.gpus}.")
        for flag, value in (("--cpu", self.cpu), ("--memory", self.memory),
                            ("--cpu-limit", self.cpu_limit), ("--memory-limit", self.memory_limit)):
            if value is not None and not _QUANTITY_RE.match(value):
                raise UsageError(f"{flag} {value!r} is not a Kubernetes quantity; use e.g. "
                                 "--cpu 500m, --cpu 2, --memory 2Gi.")
        if self.image_pull_policy not in (None, *PULL_POLICIES):
            raise UsageError(f"--image-pull-policy {self.image_pull_policy!r} is not one of "
                             f"{', '.join(PULL_POLICIES)}.")
        for secret in self.image_pull_secrets:
            check_object_name(secret, "--image-pull-secret")
        for key in self.env:
            if not _ENV_RE.match(key):
                raise UsageError(f"--env {key!r} is not an environment variable name.")
        for volume in self.volumes:
            if not volume.is_host_path:
                check_object_name(volume.source, "PersistentVolumeClaim")
        if self.model_path is not None and not self.model_path.startswith("/"):
            raise UsageError(f"--model-path {self.model_path!r} must be an absolute path inside "
                             "the container (e.g. /models/digits, mounted with --volume).")
        if not isinstance(self.run_as_user, int) or self.run_as_user <= 0:
            raise UsageError("--run-as-user must be a non-root uid (> 0): cellship's pods never "
                             "run as root.")


def check_name(name: str) -> str:
    """The deployment's name is also its Service's, so it must be a DNS (RFC 1035) label.
    Refused rather than normalised: the user types it again for ``undeploy``."""
    if not is_dns_label(name):
        raise UsageError(f"--name {name!r} is not usable as a Kubernetes Service name: use at "
                         "most 63 lower-case letters, digits or '-', starting with a letter "
                         f"and ending with a letter or digit (e.g. {dns_label(name or 'model')!r}).")
    return name


def parse_pull_policy(text: str | None) -> str | None:
    """``never`` -> ``Never``: Kubernetes' spelling, whatever case was typed."""
    if text is None:
        return None
    for policy in PULL_POLICIES:
        if policy.lower() == text.lower():
            return policy
    raise UsageError(f"--image-pull-policy {text!r} is not one of {', '.join(PULL_POLICIES)}.")


def parse_env(pairs: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {pair!r} should be NAME=VALUE.")
        out[key] = value
    return out
