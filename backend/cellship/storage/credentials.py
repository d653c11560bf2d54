"""Where a store's credentials come from, and how they are named.

The Secret (``--storage-secret NAME``, in the job's namespace) holds the keys the AWS CLI
and SDKs read, so one Secret serves cellship, ``aws s3`` and most tools::

    kubectl create secret generic s3-creds \\
        --from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=... \\
        --from-literal=AWS_ENDPOINT_URL=https://minio.example.com:9000 \\
        --from-literal=AWS_REGION=us-east-1

``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` are required; ``AWS_ENDPOINT_URL``
(leave it out for AWS itself) and ``AWS_REGION`` (default ``us-east-1``) are optional. A
Secret written for KServe (keys as above, the endpoint in the annotation
``serving.kserve.io/s3-endpoint`` with ``serving.kserve.io/s3-usehttps``, the region in
``serving.kserve.io/s3-region``) is read too.

In the pods the keys arrive as env from ``secretKeyRef`` (only in the container that
uploads); at home the same Secret is read through the user's kubeconfig, or, with no
Secret named, the standard AWS environment/profile is used (boto3's own chain).
:class:`Credentials` never shows its secret key (repr, str, errors).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Mapping

from cellship.inside.objects import ACCESS_KEY, ENDPOINT, REGION, REQUIRED_KEYS, SECRET_KEY
from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesForbidden, KubernetesNotFound
from cellship.storage.errors import StorageError

KSERVE_ENDPOINT = "serving.kserve.io/s3-endpoint"
KSERVE_HTTPS = "serving.kserve.io/s3-usehttps"
KSERVE_REGION = "serving.kserve.io/s3-region"
AWS_DEFAULT = "the AWS default endpoint"


@dataclass(frozen=True)
class Credentials:
    """Keys, endpoint and region of one store; ``source`` says where they came from (for
    messages: "the Secret s3-creds in namespace ml")."""

    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    region: str | None = None
    source: str = "the AWS environment"
    secret: str | None = None  # the Secret's name, when read from one
    namespace: str | None = None

    @property
    def where(self) -> str:
        return self.endpoint or AWS_DEFAULT


# The env a container that talks to the store gets from the Secret: (variable = key, required).
SECRET_ENV = ((ACCESS_KEY, True), (SECRET_KEY, True), (ENDPOINT, False), (REGION, False))


def secret_env(secret: str) -> list[dict[str, Any]]:
    """Container env entries that read the store's keys from the Secret ``secret``
    (``secretKeyRef``; endpoint and region optional): names, never values."""
    return [{"name": name, "valueFrom": {"secretKeyRef": {
        "name": secret, "key": name, **({} if required else {"optional": True})}}}
        for name, required in SECRET_ENV]


def secret_fix(name: str, namespace: str | None) -> str:
    ns = f" -n {namespace}" if namespace else ""
    return (f"kubectl create secret generic {name}{ns} --from-literal={ACCESS_KEY}=... "
            f"--from-literal={SECRET_KEY}=... --from-literal={ENDPOINT}=https://HOST:PORT")


def _decode(name: str, namespace: str, key: str, value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise StorageError(f"The Secret {name} in namespace {namespace} holds a {key} that "
                           "is not base64 text (the API always encodes data values): "
                           f"recreate it, e.g. {secret_fix(name, namespace)}.") from None


def from_secret(secret: Mapping[str, Any], name: str, namespace: str) -> Credentials:
    """A Secret object (as the API returns it) -> Credentials, or a StorageError that
    names the Secret and the keys it lacks."""
    raw = secret.get("data") or {}
    data = {k: _decode(name, namespace, k, v) for k, v in raw.items() if isinstance(v, str)}
    data |= {k: str(v) for k, v in (secret.get("stringData") or {}).items()}
    missing = [k for k in REQUIRED_KEYS if not data.get(k)]
    if missing:
        found = ", ".join(sorted(data)) or "no keys at all"
        raise StorageError(f"The Secret {name} in namespace {namespace} has no "
                           f"{' and no '.join(missing)} (it holds {found}); an object-storage "
                           f"Secret holds {ACCESS_KEY}, {SECRET_KEY} and optionally {ENDPOINT}, "
                           f"{REGION}: e.g. {secret_fix(name, namespace)}.")
    notes = (secret.get("metadata") or {}).get("annotations") or {}
    endpoint = data.get(ENDPOINT) or None
    if not endpoint and notes.get(KSERVE_ENDPOINT):
        scheme = "http" if str(notes.get(KSERVE_HTTPS, "1")) == "0" else "https"
        host = notes[KSERVE_ENDPOINT]
        endpoint = host if "://" in host else f"{scheme}://{host}"
    return Credentials(access_key=data[ACCESS_KEY], secret_key=data[SECRET_KEY],
                       endpoint=endpoint,
                       region=data.get(REGION) or notes.get(KSERVE_REGION) or None,
                       source=f"the Secret {name} in namespace {namespace}", secret=name,
                       namespace=namespace)


def read_secret(client: KubeAPI, namespace: str, name: str) -> Credentials:
    """The Secret ``name`` read through the user's kubeconfig."""
    try:
        secret = client.get("Secret", namespace, name)
    except KubernetesNotFound:
        raise StorageError(f"The Secret {name} (--storage-secret) does not exist in namespace "
                           f"{namespace}: create it with {secret_fix(name, namespace)}.") from None
    except KubernetesForbidden:
        raise StorageError(f"You may not read the Secret {name} in namespace {namespace} "
                           "(--storage-secret), so cellship cannot check the bucket before "
                           "the job starts nor read its files back: ask for `get` on secrets "
                           "there, or read the bucket with your own AWS credentials "
                           "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL).") from None
    return from_secret(secret, name, namespace)


def from_environment(environ: Mapping[str, str]) -> Credentials:
    """The user's own AWS environment (keys, or boto3's chain: ``~/.aws`` profiles)."""
    return Credentials(access_key=environ.get(ACCESS_KEY) or None,
                       secret_key=environ.get(SECRET_KEY) or None,
                       endpoint=environ.get(ENDPOINT) or environ.get("AWS_ENDPOINT_URL_S3") or None,
                       region=environ.get(REGION) or environ.get("AWS_DEFAULT_REGION") or None,
                       source="your AWS environment (AWS_* variables or ~/.aws)")
