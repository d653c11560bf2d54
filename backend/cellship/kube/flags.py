"""The ``--backend kubernetes`` flags of ``%%train`` / ``cellship train``, parsed into the
plain dict :class:`~cellship.kube.options.KubernetesOptions` reads.

Why here and not in :mod:`cellship.train.options`: the syntax of a toleration, a volume or a
resource quantity is Kubernetes knowledge; :mod:`cellship.train.options` only appends
:data:`K8S_OPTIONS` to the shared job options, so the magic and the CLI accept the very
same flags. Every parser refuses bad syntax at once with a :class:`UsageError` that shows
the form expected, before anything is recorded or sent to a cluster.

The dict holds only what the user gave (flags, then ``$CELLSHIP_K8S_*`` defaults); it is
stored with the job as ``spec["kubernetes"]`` and laid over the backend's own options.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any, Mapping

from cellship.durations import parse_duration
from cellship.errors import UsageError
from cellship.kube.errors import KubernetesInvalid
from cellship.kube.names import check_namespace, check_object_name
from cellship.kube.options import LAUNCHERS, KubernetesOptions
from cellship.storage.url import is_s3
from cellship.storage.url import parse as parse_s3

BACKEND = "kubernetes"
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
OPERATORS = ("Equal", "Exists")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")

# Defaults a user sets once in the shell or the kernel's environment.
ENV_DEFAULTS = {"namespace": "CELLSHIP_K8S_NAMESPACE", "image": "CELLSHIP_K8S_IMAGE",
                "context": "CELLSHIP_K8S_CONTEXT", "registry": "CELLSHIP_K8S_REGISTRY"}

# A label key: an optional DNS-subdomain prefix and '/', then a name of <= 63 characters.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE_RE = re.compile(rf"^({_LABEL_NAME})?$")
# A Kubernetes resource quantity: 2, 0.5, 500m, 4Gi, 1e3 (what the API server accepts).
_QUANTITY_RE = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|[numkMGTPE]|[KMGTPE]i)?$")

# (flags, argparse kwargs, options key). dest is ``k8s_<key>`` so these never collide
# with a job option, and "which Kubernetes flags were given" is one loop.
_FLAGS: list[tuple[tuple[str, ...], dict[str, Any], str]] = [
    (("--namespace",), dict(metavar="NS", help="(kubernetes) namespace of the job's objects "
                            "(default $CELLSHIP_K8S_NAMESPACE, else the context's)"), "namespace"),
    (("--image",), dict(metavar="IMAGE", help="(kubernetes) image with Python, TensorFlow "
                        "and tf-keras (default $CELLSHIP_K8S_IMAGE, else the official "
                        "tensorflow/tensorflow image of this TensorFlow version plus a tf-keras "
                        "layer, pushed to --registry)"), "image"),
    (("--registry",), dict(metavar="HOST[/PATH]", help="(kubernetes) registry the cluster pulls "
                           "from, where cellship pushes the images it makes for jobs (default "
                           "$CELLSHIP_K8S_REGISTRY)"), "registry"),
    (("--context",), dict(metavar="NAME", help="(kubernetes) kubeconfig context (default "
                          "$CELLSHIP_K8S_CONTEXT, else the current one)"), "context"),
    (("--launcher",), dict(choices=LAUNCHERS, help="(kubernetes) pods (default: a pod per "
                           "replica) or tfjob (one Kubeflow TFJob)"), "launcher"),
    (("--node-selector",), dict(action="append", metavar="K=V", help="(kubernetes) node label "
                                "every pod needs, e.g. gpu=a100 (repeatable, or K=V,K2=V2)"),
     "node_selector"),
    (("--toleration",), dict(action="append", metavar="TAINT",
                             help="(kubernetes) tolerate a taint: key=value:Effect, key:Effect "
                                  "(any value), key, or JSON (repeatable)"), "tolerations"),
    (("--image-pull-secret",), dict(action="append", metavar="NAME", help="(kubernetes) Secret "
                                    "to pull the image with (repeatable)"), "image_pull_secrets"),
    (("--service-account",), dict(metavar="NAME", help="(kubernetes) serviceAccountName of the "
                                  "pods"), "service_account"),
    (("--volume",), dict(action="append", metavar="CLAIM:/PATH[:ro]",
                         help="(kubernetes) mount a PersistentVolumeClaim in every replica; "
                              "CLAIM/SUB:/PATH mounts a sub-directory (repeatable)"), "volumes"),
    (("--cpu",), dict(metavar="Q", help="(kubernetes) CPU request per replica, e.g. 2 or 500m"),
     "cpu"),
    (("--memory",), dict(metavar="Q", help="(kubernetes) memory request per replica, e.g. 4Gi"),
     "memory"),
    (("--cpu-limit",), dict(metavar="Q", help="(kubernetes) CPU limit per replica"), "cpu_limit"),
    (("--memory-limit",), dict(metavar="Q", help="(kubernetes) memory limit per replica"),
     "memory_limit"),
    (("--disk-limit",), dict(metavar="Q", help="(kubernetes) limit of each replica's job "
                             "dir, e.g. 10Gi: over it the pod is evicted (and made again within "
                             "--max-restarts)"), "disk_limit"),
    (("--k8s-logdir",), dict(metavar="PATH", help="(kubernetes) TensorBoard logdir inside the "
                             "pods, e.g. on a --volume, or s3://BUCKET/PREFIX (with "
                             "--storage-secret)"), "logdir"),
    (("--k8s-output-dir",), dict(metavar="PATH", help="(kubernetes) output directory inside the "
                                 "pods, e.g. on a --volume, or s3://BUCKET/PREFIX: the chief's "
                                 "files go to object storage (with --storage-secret)"),
     "output_dir"),
    (("--storage-secret",), dict(metavar="NAME", help="(kubernetes) Secret with the object "
                                 "store's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optional "
                                 "AWS_ENDPOINT_URL, AWS_REGION, for s3:// dirs"), "storage_secret"),
    (("--image-pull-policy",), dict(choices=PULL_POLICIES, help="(kubernetes) when the kubelet "
                                    "pulls the image (default: the cluster's rule)"),
     "image_pull_policy"),
    (("--peer-timeout",), dict(metavar="DURATION", help="(kubernetes) how long a pod waits for "
                               "its peers' DNS names (default 5m)"), "peer_timeout"),
    (("--fetch-linger",), dict(metavar="DURATION", help="(kubernetes) how long the chief pod "
                               "waits after its program for cellship to copy its files home "
                               "(default 10m; 0: not at all)"), "fetch_linger"),
]

K8S_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (flags, kwargs | {"dest": f"k8s_{key}", "default": None}) for flags, kwargs, key in _FLAGS]


def given_flags(args: argparse.Namespace) -> list[str]:
    """The Kubernetes flags the user gave (to refuse them on another backend)."""
    return [flags[0] for flags, _, key in _FLAGS if getattr(args, f"k8s_{key}", None) is not None]


def check_backend(args: argparse.Namespace, backend: str) -> None:
    """Kubernetes flags on another backend are a mistake to say out loud, not to ignore."""
    flags = given_flags(args)
    if flags and backend != BACKEND:
        listed = " and ".join(flags[:3]) + (" ..." if len(flags) > 3 else "")
        raise UsageError(f"{listed} only appl{'ies' if len(flags) == 1 else 'y'} to --backend "
                         f"kubernetes, but this job runs on the {backend} backend: add "
                         "--backend kubernetes (or set CELLSHIP_BACKEND=kubernetes), or drop "
                         f"{'it' if len(flags) == 1 else 'them'}.")


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Parsed flags -> the sparse options dict (only what was given), validated."""
    data: dict[str, Any] = {}
    for flags, _, key in _FLAGS:
        value = getattr(args, f"k8s_{key}", None)
        if value is not None:
            value = [_unquote(v) for v in value] if isinstance(value, list) else _unquote(value)
            data[key] = _PARSERS.get(key, _text)(value, flags[0])
    return validate(data)


def _unquote(value: str) -> str:
    """IPython splits a magic's line without removing quotes (``--toleration '{"key":
    "gpu"}'`` keeps its ``'``); a shell removes them. Strip one surrounding pair so both
    read the same. No valid value of these flags is itself quoted."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def validate(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a whole options dict the way the backend will read it; a name Kubernetes
    rejects becomes a UsageError (it is the user's to fix, not the cluster's)."""
    try:
        KubernetesOptions.from_dict(data)
    except KubernetesInvalid as err:
        raise UsageError(str(err)) from None
    return dict(data)


def resolve(options: Mapping[str, Any] | None, backend: str,
            environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The dict to store with a job: the given options plus ``$CELLSHIP_K8S_*`` defaults
    for what was not given. None for other backends (giving options there is refused)."""
    if backend != BACKEND:
        if options:
            raise UsageError(f"Kubernetes options ({', '.join(sorted(options))}) only apply to "
                             f"backend='kubernetes', but this job runs on the {backend} backend.")
        return None
    environ = os.environ if environ is None else environ
    data = dict(options or {})
    for key, var in ENV_DEFAULTS.items():
        value = (environ.get(var) or "").strip()
        if data.get(key) is None and value:
            try:
                data[key] = _PARSERS.get(key, _text)(value, f"${var}")
            except UsageError as err:
                raise UsageError(f"{err} (set in the environment: change or unset ${var}.)") from None
    return validate(data)


# -- one parser per flag ------------------------------------------------------------------
def _text(value: str, flag: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise UsageError(f"{flag} {value!r} must be one word without spaces.")
    return value


def _namespace(value: str, flag: str) -> str:
    try:
        return check_namespace(value.strip())
    except KubernetesInvalid as err:
        raise UsageError(f"{flag}: {err}") from None


def _object_name(value: str, flag: str) -> str:
    try:
        return check_object_name(value.strip(), flag)
    except KubernetesInvalid as err:
        raise UsageError(str(err)) from None


def _names(values: list[str], flag: str) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``, each a valid object name."""
    out = [_object_name(v, flag) for value in values for v in value.split(",") if v.strip()]
    return list(dict.fromkeys(out))


def _absolute(value: str, flag: str) -> str:
    if is_s3(value):
        return str(parse_s3(value, flag))  # normalised: s3://bucket/prefix
    if not value.startswith("/"):
        raise UsageError(f"{flag} {value!r} must be an absolute path inside the pods, e.g. "
                         "/data/tensorboard (a --volume mount path, for instance), or an "
                         "s3://BUCKET/PREFIX location.")
    return value


def parse_quantity(value: str, flag: str) -> str:
    """``2``, ``500m``, ``4Gi``: refuse what the API server would, with the likely fix."""
    value = value.strip()
    if not _QUANTITY_RE.match(value):
        hint = ""
        match = re.match(r"^(\d+(?:\.\d+)?)\s*([KMGTPE])i?B$", value, re.IGNORECASE)
        if match:
            hint = f" (did you mean {match.group(1)}{match.group(2).upper()}i?)"
        raise UsageError(f"{flag} {value!r} is not a Kubernetes quantity{hint}: use a number "
                         "with an optional suffix, e.g. 2, 500m (CPU) or 512Mi, 4Gi (memory).")
    return value


def _seconds(value: str, flag: str, zero_ok: bool = False) -> float:
    """A duration flag (``90s``, ``5m``, plain seconds) in seconds: positive, or with
    ``zero_ok`` also 0."""
    try:
        seconds = parse_duration(value)
    except UsageError as err:
        raise UsageError(f"{flag}: {err}") from None
    if seconds < 0 or (seconds == 0 and not zero_ok):
        raise UsageError(f"{flag} must be {'0 or more' if zero_ok else 'positive'}, got {value!r}.")
    return seconds


def _peer_timeout(value: str, flag: str) -> float:
    return _seconds(value, flag)


def _linger(value: str, flag: str) -> float:
    return _seconds(value, flag, zero_ok=True)


def parse_node_selector(values: list[str], flag: str = "--node-selector") -> dict[str, str]:
    """``["gpu=a100", "zone=a,pool=x"]`` -> ``{"gpu": "a100", "zone": "a", "pool": "x"}``."""
    out: dict[str, str] = {}
    for value in values:
        for pair in (p.strip() for p in value.split(",")):
            if not pair:
                continue
            key, sep, label = pair.partition("=")
            if not sep or not _LABEL_KEY_RE.match(key) or not _LABEL_VALUE_RE.match(label):
                raise UsageError(
                    f"{flag} {pair!r} must look like LABEL=VALUE with a valid node label, e.g. "
                    f"{flag} nvidia.com/gpu.product=A100 (keys: [prefix/]name; values: up to "
                    "63 letters, digits, '-', '_' or '.').")
            out[key] = label
    return out


def parse_toleration(text: str, flag: str = "--toleration") -> list[dict[str, Any]]:
    """One ``--toleration`` -> toleration dicts (JSON may give a list of them).

    ``key=value:Effect`` tolerates that taint exactly (operator Equal); ``key:Effect``
    tolerates the key with any value (Exists); ``key`` / ``key:Exists`` any value and
    effect; ``key=value`` that value with any effect. kubectl writes taints the same way.
    """
    text = text.strip()
    if not text:
        raise UsageError(f"{flag} needs a taint, e.g. {flag} nvidia.com/gpu:NoSchedule (to "
                         f"tolerate every taint say so: {flag} '{{\"operator\": \"Exists\"}}').")
    if text.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as err:
            raise UsageError(f"{flag} {text!r} is not valid JSON ({err}); e.g. "
                             f"{flag} '{{\"key\": \"gpu\", \"operator\": \"Exists\"}}'.") from None
        items = data if isinstance(data, list) else [data]
        return [_check_toleration(item, text, flag) for item in items]
    rest, _, effect = text.rpartition(":") if ":" in text else (text, "", "")
    key, sep, value = rest.partition("=")
    toleration: dict[str, Any] = {"key": key, "operator": "Equal" if sep else "Exists"}
    if sep:
        toleration["value"] = value
    if effect.lower() == "exists" and not sep:
        effect = ""
    if effect:
        canonical = {e.lower(): e for e in EFFECTS}.get(effect.lower())
        if canonical is None:
            raise UsageError(f"{flag} {text!r}: effect {effect!r} is not one of "
                             f"{', '.join(EFFECTS)}; e.g. {flag} nvidia.com/gpu=present:NoSchedule.")
        toleration["effect"] = canonical
    return [_check_toleration(toleration, text, flag)]


def _check_toleration(item: Any, text: str, flag: str) -> dict[str, Any]:
    example = (f"e.g. {flag} dedicated=ml:NoSchedule, {flag} nvidia.com/gpu:NoSchedule or "
               f"{flag} '{{\"key\": \"gpu\", \"operator\": \"Exists\"}}'")
    if not isinstance(item, dict):
        raise UsageError(f"{flag} {text!r}: a toleration is a JSON object; {example}.")
    unknown = set(item) - set(TOLERATION_KEYS)
    if unknown:
        raise UsageError(f"{flag} {text!r}: unknown field(s) {sorted(unknown)}; a toleration has "
                         f"{', '.join(TOLERATION_KEYS)}.")
    key = item.get("key", "")
    operator = item.get("operator", "Equal")
    if key and not _LABEL_KEY_RE.match(str(key)):
        raise UsageError(f"{flag} {text!r}: {key!r} is not a valid taint key; {example}.")
    if operator not in OPERATORS:
        raise UsageError(f"{flag} {text!r}: operator must be Equal or Exists, got {operator!r}.")
    if not key and operator != "Exists":
        raise UsageError(f"{flag} {text!r} names no taint key; {example}.")
    if operator == "Exists" and item.get("value"):
        raise UsageError(f"{flag} {text!r}: operator Exists takes no value; {example}.")
    if "value" in item and not _LABEL_VALUE_RE.match(str(item["value"])):
        raise UsageError(f"{flag} {text!r}: {item['value']!r} is not a valid taint value.")
    if item.get("effect") and item["effect"] not in EFFECTS:
        raise UsageError(f"{flag} {text!r}: effect must be one of {', '.join(EFFECTS)}.")
    seconds = item.get("tolerationSeconds")
    if seconds is not None and (not isinstance(seconds, int) or item.get("effect") != "NoExecute"):
        raise UsageError(f"{flag} {text!r}: tolerationSeconds is a whole number and only "
                         "applies to effect NoExecute.")
    return dict(item)


def _tolerations(values: list[str], flag: str) -> list[dict[str, Any]]:
    return [t for value in values for t in parse_toleration(value, flag)]


def parse_volume(text: str, flag: str = "--volume") -> dict[str, Any]:
    """``data:/data``, ``data:/data:ro``, ``data/runs/a:/logs:rw`` -> a volume dict
    (a PVC name holds no '/', so what follows the first '/' of CLAIM is its subPath)."""
    usage = (f"{flag} {text!r} must look like CLAIM:/MOUNT/PATH[:ro], e.g. {flag} "
             f"datasets:/data:ro (CLAIM/SUBDIR:/PATH mounts a sub-directory of the claim).")
    parts = text.strip().split(":")
    mode = None
    if len(parts) == 3:
        mode = parts.pop().lower()
        if mode not in ("ro", "rw"):
            raise UsageError(f"{flag} {text!r}: the mode after the path is ro or rw, got "
                             f"{mode!r}.")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise UsageError(usage)
    claim_part, mount_path = parts
    claim, _, sub_path = claim_part.partition("/")
    if not mount_path.startswith("/"):
        raise UsageError(f"{usage} The mount path {mount_path!r} must be absolute.")
    volume: dict[str, Any] = {"claim": _object_name(claim, f"{flag} claim"),
                              "mount_path": mount_path, "read_only": mode == "ro"}
    if sub_path.strip("/"):
        volume["sub_path"] = sub_path.strip("/")
    return volume


def _volumes(values: list[str], flag: str) -> list[dict[str, Any]]:
    volumes = [parse_volume(v, flag) for v in values]
    paths = [v["mount_path"].rstrip("/") for v in volumes]
    for path in paths:
        if paths.count(path) > 1:
            raise UsageError(f"{flag}: two volumes are mounted at {path}; give each its own path.")
    return volumes


_PARSERS: dict[str, Any] = {
    "namespace": _namespace, "image": _text, "context": _text, "launcher": _text,
    "node_selector": parse_node_selector, "tolerations": _tolerations,
    "image_pull_secrets": _names, "service_account": _object_name, "volumes": _volumes,
    "cpu": parse_quantity, "memory": parse_quantity, "cpu_limit": parse_quantity,
    "memory_limit": parse_quantity, "disk_limit": parse_quantity, "logdir": _absolute,
    "output_dir": _absolute,
    "image_pull_policy": _text, "peer_timeout": _peer_timeout, "fetch_linger": _linger,
    "storage_secret": _object_name,
}
