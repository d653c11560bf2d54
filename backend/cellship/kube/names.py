"""Job names -> names Kubernetes accepts.

A cellship job name may hold ``_``, ``.`` and capitals (``Digits_CNN.v2``); Kubernetes
object names that end up in DNS (Services, pod hostnames) must be RFC 1035 labels: at most
63 lower-case letters, digits and ``-``, starting with a letter and ending with an
alphanumeric. Normalising rather than refusing keeps ``%%train --name`` working the same
on every backend; the job id is always appended, so two names that normalise alike never
collide, and an over-long name is cut with a short hash of the original so it stays unique.
"""

from __future__ import annotations

import hashlib
import re

from cellship.kube.errors import KubernetesInvalid

DNS_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
# Room left in a 63-character label after the job prefix: "-<type>-<index>" with
# type <= 6 ("worker"/"chief"/"ps") and index <= 4 digits.
PREFIX_MAX = DNS_LABEL_MAX - len("-worker-9999")
_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAMESPACE_RULE = ("a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
                   "starting and ending with a letter or digit (e.g. ml-team)")


def _short_hash(text: str, length: int = 5) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_label(text: str, max_length: int = DNS_LABEL_MAX) -> str:
    """``Digits_CNN.v2`` -> ``digits-cnn-v2``: a valid RFC 1035 label of ``max_length``
    characters at most. Too long: cut and suffixed with a hash of the original text."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not label or not label[0].isalpha():
        label = f"j-{label}".rstrip("-")
    if len(label) > max_length:
        label = f"{label[:max_length - 6].rstrip('-')}-{_short_hash(text)}"
    return label


def job_prefix(job_name: str, job_id: str) -> str:
    """The prefix of every object of a job: the normalised name plus the job id, short
    enough that ``<prefix>-<type>-<index>`` is still a DNS label."""
    suffix = f"-{job_id.lower()}"
    return dns_label(job_name, PREFIX_MAX - len(suffix)) + suffix


def replica_name(prefix: str, replica_type: str, index: int) -> str:
    """A replica's pod name and hostname: ``<prefix>-<type>-<index>`` (as TFJob names them)."""
    name = f"{prefix}-{replica_type}-{index}"
    if not is_dns_label(name):  # only reachable with an index beyond 9999
        raise KubernetesInvalid(f"Pod name {name!r} is not a DNS label ({_NAMESPACE_RULE}); "
                                "use fewer replicas.")
    return name


def is_dns_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and bool(_LABEL_RE.match(text))


def label_value(text: str) -> str:
    """Any text -> a valid label value (<= 63 of ``[-A-Za-z0-9_.]``, alphanumeric at both
    ends), e.g. the job's display name."""
    value = re.sub(r"[^-A-Za-z0-9_.]+", "-", text)
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    if len(value) > LABEL_VALUE_MAX:
        value = value[:LABEL_VALUE_MAX - 6].rstrip("-_.") + "-" + _short_hash(text)
    return value


def check_namespace(namespace: str) -> str:
    """Namespaces are the user's to name: refuse (with the rule) rather than normalise,
    since a normalised namespace would be someone else's."""
    if len(namespace) > DNS_LABEL_MAX or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", namespace):
        raise KubernetesInvalid(f"Namespace {namespace!r} is not valid: it must be {_NAMESPACE_RULE}.")
    return namespace


_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_object_name(name: str, what: str) -> str:
    """Names of objects the user made (PVCs, Secrets, ServiceAccounts) are DNS-1123
    subdomains; refuse others before anything is created, showing the rule."""
    if len(name) > 253 or not _SUBDOMAIN_RE.match(name):
        raise KubernetesInvalid(
            f"{what} {name!r} is not a valid Kubernetes name: use at most 253 lower-case "
            "letters, digits, '-' or '.', starting and ending with a letter or digit.")
    return name
