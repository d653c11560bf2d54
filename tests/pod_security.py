"""A checker of the Kubernetes Pod Security Standards' "restricted" profile, field by field.

Why our own: the test cluster is Kubernetes 1.20, which predates the PodSecurity admission
plugin (1.22+; its apiserver lists no such plugin), and the upstream webhook
(k8s.io/pod-security-admission) cannot be built here without the Go module proxy. So the
profile is written down once, from https://kubernetes.io/docs/concepts/security/pod-security-standards/
("restricted" = every "baseline" control plus the restricted ones), and used twice: by the
unit tests on every generated manifest, and by the cluster tier's admission webhook on the
pods the API server really admits (after its defaulting). Each control is one function,
and each refusal names the field (``spec.containers[0].securityContext.privileged``) and
the control, as the upstream plugin's messages do.

cellship's own rule on top (the issue asks for it; the profile leaves it optional):
``readOnlyRootFilesystem: true`` on every container, checked when ``read_only_root`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

# Restricted: "Volume Types".
ALLOWED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                             "persistentVolumeClaim", "projected", "secret"})
# Baseline: "Sysctls" (the safe set, as of Kubernetes 1.29).
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                          "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                          "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                          "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                          "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"})
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})  # restricted: "Capabilities"
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
VOLUME_NON_TYPE_KEYS = frozenset({"name"})
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class Violation:
    """One field that breaks one control of the profile."""

    field: str
    control: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.control} ({self.detail})"


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in CONTAINER_LISTS:
        for i, container in enumerate(spec.get(kind) or ()):
            yield f"spec.{kind}[{i}]", container


def _context(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("securityContext") or {}


def host_namespaces(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            yield Violation(f"spec.{key}", "Host Namespaces", "must be unset or false")


def host_process(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    places = [("spec", spec), *_containers(spec)]
    for path, obj in places:
        if (_context(obj).get("windowsOptions") or {}).get("hostProcess"):
            yield Violation(f"{path}.securityContext.windowsOptions.hostProcess",
                            "HostProcess", "must be unset or false")


def privileged(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for path, c in _containers(spec):
        if _context(c).get("privileged"):
            yield Violation(f"{path}.securityContext.privileged", "Privileged Containers",
                            "must be unset or false")


def host_ports(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for path, c in _containers(spec):
        for j, port in enumerate(c.get("ports") or ()):
            if port.get("hostPort"):
                yield Violation(f"{path}.ports[{j}].hostPort", "Host Ports",
                                "must be unset or 0")


def volume_types(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    """Baseline forbids hostPath; restricted allows only :data:`ALLOWED_VOLUMES`."""
    for i, volume in enumerate(spec.get("volumes") or ()):
        for key in set(volume) - VOLUME_NON_TYPE_KEYS - ALLOWED_VOLUMES:
            control = "HostPath Volumes" if key == "hostPath" else "Volume Types"
            yield Violation(f"spec.volumes[{i}].{key}", control,
                            f"allowed: {', '.join(sorted(ALLOWED_VOLUMES))}")


def apparmor(spec: Mapping[str, Any], annotations: Mapping[str, str]) -> Iterator[Violation]:
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or value.startswith("localhost/")):
            yield Violation(f"metadata.annotations[{key}]", "AppArmor",
                            "must be runtime/default or localhost/*")
    for path, obj in [("spec", spec), *_containers(spec)]:
        kind = (_context(obj).get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in SECCOMP_ALLOWED:
            yield Violation(f"{path}.securityContext.appArmorProfile.type", "AppArmor",
                            "must be RuntimeDefault or Localhost")


def selinux(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for path, obj in [("spec", spec), *_containers(spec)]:
        options = _context(obj).get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES:
            yield Violation(f"{path}.securityContext.seLinuxOptions.type", "SELinux",
                            f"allowed: {sorted(SELINUX_TYPES)}")
        for key in ("user", "role"):
            if options.get(key):
                yield Violation(f"{path}.securityContext.seLinuxOptions.{key}", "SELinux",
                                "must be unset")


def proc_mount(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for path, c in _containers(spec):
        if _context(c).get("procMount", "Default") != "Default":
            yield Violation(f"{path}.securityContext.procMount", "/proc Mount Type",
                            "must be unset or Default")


def sysctls(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for i, sysctl in enumerate(_context(spec).get("sysctls") or ()):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield Violation(f"spec.securityContext.sysctls[{i}].name", "Sysctls",
                            f"{sysctl.get('name')} is not in the safe set")


def privilege_escalation(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for path, c in _containers(spec):
        if _context(c).get("allowPrivilegeEscalation") is not False:
            yield Violation(f"{path}.securityContext.allowPrivilegeEscalation",
                            "Privilege Escalation", "must be set to false")


def run_as_non_root(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    """The pod's ``runAsNonRoot: true`` covers containers that leave it unset; a container's
    explicit false is refused either way."""
    pod_level = _context(spec).get("runAsNonRoot")
    if pod_level is False:
        yield Violation("spec.securityContext.runAsNonRoot", "Running as Non-root",
                        "must not be false")
    for path, c in _containers(spec):
        value = _context(c).get("runAsNonRoot")
        if value is False or (value is None and pod_level is not True):
            yield Violation(f"{path}.securityContext.runAsNonRoot", "Running as Non-root",
                            "must be true (here or in the pod's securityContext)")


def run_as_user(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for path, obj in [("spec", spec), *_containers(spec)]:
        if _context(obj).get("runAsUser") == 0:
            yield Violation(f"{path}.securityContext.runAsUser", "Running as Non-root user",
                            "must not be 0")


def seccomp(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    """Pod-level RuntimeDefault/Localhost covers containers that leave it unset; every
    explicit profile must be one of those two (baseline already refuses Unconfined)."""
    pod_type = (_context(spec).get("seccompProfile") or {}).get("type")
    if pod_type is not None and pod_type not in SECCOMP_ALLOWED:
        yield Violation("spec.securityContext.seccompProfile.type", "Seccomp",
                        "must be RuntimeDefault or Localhost")
    for path, c in _containers(spec):
        kind = (_context(c).get("seccompProfile") or {}).get("type")
        if kind is None and pod_type not in SECCOMP_ALLOWED:
            yield Violation(f"{path}.securityContext.seccompProfile.type", "Seccomp",
                            "must be RuntimeDefault or Localhost (here or in the pod's)")
        elif kind is not None and kind not in SECCOMP_ALLOWED:
            yield Violation(f"{path}.securityContext.seccompProfile.type", "Seccomp",
                            "must be RuntimeDefault or Localhost")


def capabilities(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    for path, c in _containers(spec):
        caps = _context(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            yield Violation(f"{path}.securityContext.capabilities.drop", "Capabilities",
                            "must include ALL")
        extra = sorted(set(caps.get("add") or ()) - ADDABLE_CAPABILITIES)
        if extra:
            yield Violation(f"{path}.securityContext.capabilities.add", "Capabilities",
                            f"only NET_BIND_SERVICE may be added, not {', '.join(extra)}")


def read_only_root_filesystem(spec: Mapping[str, Any], _: Mapping[str, str]) -> Iterator[Violation]:
    """cellship's addition: not a control of the profile."""
    for path, c in _containers(spec):
        if _context(c).get("readOnlyRootFilesystem") is not True:
            yield Violation(f"{path}.securityContext.readOnlyRootFilesystem",
                            "cellship: read-only root filesystem", "must be true")


Check = Callable[[Mapping[str, Any], Mapping[str, str]], Iterator[Violation]]
BASELINE: tuple[Check, ...] = (host_process, host_namespaces, privileged, host_ports,
                               volume_types, apparmor, selinux, proc_mount, sysctls)
RESTRICTED: tuple[Check, ...] = BASELINE + (privilege_escalation, run_as_non_root,
                                            run_as_user, seccomp, capabilities)


def violations(pod_spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None, *,
               read_only_root: bool = True) -> list[Violation]:
    """Every field of a pod spec (and its pod's annotations) that breaks "restricted"."""
    checks = RESTRICTED + ((read_only_root_filesystem,) if read_only_root else ())
    return [v for check in checks for v in check(pod_spec, annotations or {})]


def pod_templates(obj: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, str]]]:
    """The pod specs (with their pods' annotations) an object of any cellship kind makes:
    a Pod, a Job or Deployment's template, each replica of a TFJob, an InferenceService's
    predictor (a pod spec with KServe's fields beside)."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return [(spec, (obj.get("metadata") or {}).get("annotations") or {})]
    if kind in ("Job", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        template = spec["template"]
        return [(template["spec"], (template.get("metadata") or {}).get("annotations") or {})]
    if kind == "TFJob":
        return [(r["template"]["spec"], (r["template"].get("metadata") or {}).get("annotations") or {})
                for r in spec["tfReplicaSpecs"].values()]
    if kind == "InferenceService":
        return [(spec["predictor"], (obj.get("metadata") or {}).get("annotations") or {})]
    raise ValueError(f"no pod template in a {kind}")


def check_object(obj: Mapping[str, Any], *, read_only_root: bool = True) -> list[Violation]:
    """:func:`violations` of every pod template in ``obj``."""
    return [v for spec, notes in pod_templates(obj)
            for v in violations(spec, notes, read_only_root=read_only_root)]
