"""Cluster jobs whose output dir or logdir is ``s3://`` (``--k8s-output-dir``,
``--k8s-logdir`` with ``--storage-secret``): where each of the job's folders goes, what the
chief pod's keeper is told, the check at submit, and reading them back home.

The layout in the bucket: the output dir's files directly under the output URL (so a
SavedModel saved as ``digits`` is ``<output URL>/digits``, which ``cellship deploy`` can
serve); the logdir under the logdir URL, or ``<output URL>/.cellship/tensorboard`` when no
logdir was given; the backup dir at ``<output URL>/.cellship/backup``; and the upload's
manifest at ``<output or logdir URL>/.cellship/jobs/<job id>.json``, written last, which
the home side waits for before it reads. A folder with no URL (the backup dir of a job
with only an ``s3://`` logdir, say) comes home through the API server as before.

The program writes locally in the pod (its output dir, logdir and backup dir are the
usual folders in the job's emptyDir); only the keeper container, which uploads, gets the
Secret's keys, as env from ``secretKeyRef``: they are in no ConfigMap, manifest value or
job store entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cellship.fetch.progress import Progress, Quiet
from cellship.fetch.pull import Outcome, Root
from cellship.inside.objects import ACCESS_KEY, LIVE_INTERVAL, PLAN_ENV
from cellship.kube.api import KubeAPI
from cellship.kube.options import KubernetesOptions
from cellship.storage import client as store
from cellship.storage import credentials as creds
from cellship.storage import sync
from cellship.storage.errors import StorageError
from cellship.storage.url import S3Url, is_s3, parse
from cellship.train.kubernetes import manifests

STATE_DIR = ".cellship"  # under the output (or logdir) URL: backup, logdir, manifests
MANIFEST_WAIT_SECONDS = 600.0


@dataclass(frozen=True)
class Place:
    """One of a job's folders: its path in the pod, its URL (None: it stays in the pod
    for the API-server copy), whether it grows while the job runs (the logdir)."""

    what: str
    pod: str
    url: S3Url | None
    live: bool = False


def uses_storage(options: KubernetesOptions) -> bool:
    return is_s3(options.output_dir) or is_s3(options.logdir)


def places(options: KubernetesOptions) -> list[Place]:
    """output, logdir, backup (in that order, as :func:`artifacts.roots` pairs them)."""
    out_url = parse(options.output_dir or "", "--k8s-output-dir") if is_s3(options.output_dir) else None
    if is_s3(options.logdir):
        log_url: S3Url | None = parse(options.logdir or "", "--k8s-logdir")
    elif out_url is not None and not options.logdir:
        log_url = out_url.child(f"{STATE_DIR}/tensorboard")
    else:
        log_url = None
    out_pod = manifests.OUTPUT_DIR if out_url or not options.output_dir else options.output_dir
    log_pod = manifests.LOGDIR if log_url or not options.logdir else options.logdir
    backup_url = out_url.child(f"{STATE_DIR}/backup") if out_url else None
    return [Place("output", out_pod, out_url), Place("logdir", log_pod, log_url, live=True),
            Place("backup", manifests.BACKUP_DIR, backup_url)]


def pod_dirs(options: KubernetesOptions) -> tuple[str, str]:
    """(output dir, logdir) as the program sees them in the pod."""
    found = places(options)
    return found[0].pod, found[1].pod


def manifest_key(options: KubernetesOptions, job_id: str) -> tuple[S3Url, str]:
    """(URL whose bucket holds it, key) of the job's upload manifest."""
    found = places(options)
    base = found[0].url or found[1].url
    if base is None:
        raise ValueError("no s3:// place")
    return base, base.key(f"{STATE_DIR}/jobs/{job_id}.json")


def upload_plan(options: KubernetesOptions, job_id: str, restarts: bool = False) -> dict[str, Any]:
    """What the keeper uploads (``CELLSHIP_UPLOADS``; no secrets in it). ``all``: the
    keeper may end right after its upload (every folder is in the bucket, and the program
    is not restarted in place, which would need the keeper again)."""
    base, key = manifest_key(options, job_id)
    roots = [{"local": p.pod, "bucket": p.url.bucket, "prefix": p.url.prefix, "live": p.live}
             for p in places(options) if p.url is not None]
    every = all(p.url is not None for p in places(options))
    return {"job_id": job_id, "roots": roots, "manifest": {"bucket": base.bucket, "key": key},
            "all": every and not restarts, "interval": LIVE_INTERVAL}


def keeper_env(options: KubernetesOptions, job_id: str,
               restarts: bool = False) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(plain env, secretKeyRef env) the keeper gets for a job with s3:// places."""
    import json

    if not uses_storage(options):
        return {}, []
    plan = upload_plan(options, job_id, restarts)
    return ({PLAN_ENV: json.dumps(plan, separators=(",", ":"))},
            creds.secret_env(options.storage_secret or ""))


# -- at home -------------------------------------------------------------------------------
def credentials(client: KubeAPI, namespace: str, options: KubernetesOptions,
                environ: Mapping[str, str] | None = None) -> creds.Credentials:
    """The job's Secret, read through the kubeconfig; when it cannot be read and the user
    has AWS credentials of their own (env or profile), those."""
    environ = os.environ if environ is None else environ
    try:
        return creds.read_secret(client, namespace, options.storage_secret or "")
    except StorageError:
        if any(environ.get(k) for k in (ACCESS_KEY, "AWS_PROFILE")):
            return creds.from_environment(environ)
        raise


def check_access(client: KubeAPI, namespace: str, options: KubernetesOptions) -> None:
    """At submit, before any object is created: the Secret exists and holds keys, and
    they may write to every ``s3://`` place (one probe object, deleted again)."""
    if not uses_storage(options):
        return
    found = creds.read_secret(client, namespace, options.storage_secret or "")
    s3 = store.connect(found)
    seen: set[tuple[str, str]] = set()
    for place in places(options):
        if place.url is None or (place.url.bucket, place.url.prefix) in seen:
            continue
        seen.add((place.url.bucket, place.url.prefix))
        store.check_access(s3, place.url, found, write=True)


class StoragePuller:
    """:class:`cellship.fetch.pull.Puller`'s counterpart for ``s3://`` roots (a Root whose
    ``remote`` is the URL): the same ``pull(roots) -> Outcome``."""

    def __init__(self, s3: Any, credentials: creds.Credentials, staging: Path,
                 progress: Progress | None = None) -> None:
        self.s3 = s3
        self.credentials = credentials
        self.staging = staging
        self.progress = progress or Quiet("fetch")

    def pull(self, roots: Sequence[Root]) -> Outcome:
        outcome = Outcome()
        for root in roots:
            got = sync.sync_down(self.s3, parse(root.remote), root.local, self.credentials,
                                 state_dir=self.staging / sync.STATE_DIR, append=root.append,
                                 exclude=(STATE_DIR,), progress=self.progress)
            outcome.files += got.files
            outcome.bytes += got.bytes
            outcome.unchanged += got.unchanged
            outcome.seconds += got.seconds
        return outcome

    def wait_uploaded(self, options: KubernetesOptions, job_id: str, alive: Callable[[], bool],
                      timeout: float = MANIFEST_WAIT_SECONDS) -> dict[str, Any]:
        base, key = manifest_key(options, job_id)
        return sync.wait_for(self.s3, base, key, self.credentials, timeout, alive)
