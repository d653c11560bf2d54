"""What ``cellship deploy MODEL_OR_IMAGE`` was given, and what the image says about itself.

Kubernetes runs container images, not directories, so a model from the model repository
(or a SavedModel directory) has to become an image first. Rather than guess a registry the
cluster can pull from, deploy says so and shows the ``cellship build`` line, or builds it
itself when ``base`` and ``tag`` are given.

An image built by ``cellship build`` already serves its model: its config's ENTRYPOINT/CMD
start TF Serving or cellship's server on 8501, with labels ``io.cellship.model`` and
``MODEL_NAME`` in its Env. :func:`inspect_image` reads them from the registry (one manifest
and one small config blob) to learn the model name for the probe and URL paths. That is
only done when no model name was given, so images that live only on the nodes (pull
policy Never) or behind a registry this machine cannot reach deploy with ``--model-name``.

A model in object storage (``s3://bucket/prefix/digits``, a SavedModel a cluster job wrote
with ``--k8s-output-dir s3://...``) is served with no image build: the Deployment's pods
get an init step (:func:`download_step`) that downloads the prefix into an emptyDir with
the keys of ``--storage-secret`` (env from ``secretKeyRef``, in the init container only),
and the server container, ``--image`` with cellship and boto3 in it, runs ``cellship serve``
on that folder. On KServe the predictor's ``storageUri`` is the URL and KServe's storage
initializer downloads it (with the credentials KServe's own service account gives it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from cellship.errors import CellshipError, UsageError

IMAGE = "image"
MODEL = "model"
S3 = "s3"  # ``ref`` is an s3:// URL of a SavedModel (or of a folder of versions)
MODELS_DIR = "/models"  # where the init step puts an s3:// model in the server's pods
EXAMPLE_BASE = "tensorflow/serving:2.14.1"


@dataclass(frozen=True)
class Source:
    """``kind`` is ``image`` (``ref`` is an image reference) or ``model`` (``ref`` names a
    model in the repository or a SavedModel directory; ``model_name`` is its name)."""

    kind: str
    ref: str
    model_name: str | None = None


@dataclass(frozen=True)
class ImageInfo:
    """What an image's config says: the model it serves and the port it listens on."""

    model_name: str | None = None
    port: int | None = None
    kind: str | None = None


def classify(text: str) -> Source:
    """A model (repository name or directory) or an image reference; else a UsageError
    saying which of the two was expected."""
    from cellship.serve import export as models
    from cellship.storage.url import is_s3
    from cellship.storage.url import parse as parse_s3

    if is_s3(text):
        url = parse_s3(text, "The model location")
        return Source(S3, str(url), url.name)
    path = Path(text).expanduser()
    looks_like_path = os.sep in text and (text.startswith((".", "~", os.sep)) or path.exists())
    if looks_like_path and path.is_dir():
        name, _ = models.resolve(text)  # ModelNotFound says what a model directory holds
        return Source(MODEL, text, name)
    if "/" not in text and ":" not in text and "@" not in text:
        if _plain_name(text) and models.version_dirs(models.root() / text):
            return Source(MODEL, text, text)
        known = sorted({m.name for m in models.list_models()})
        listing = f" Models here: {', '.join(known)}." if known else ""
        raise UsageError(
            f"{text!r} is neither a model in cellship's model repository nor an image reference. "
            "deploy runs a container image: give one with its registry and tag (e.g. "
            f"registry.example.com/team/{text or 'model'}:v1), or build one from a model with "
            f"`cellship build MODEL --base {EXAMPLE_BASE} --tag REGISTRY/REPO:TAG`.{listing}")
    from cellship.images.reference import parse

    parse(text)  # BadReference (a UsageError) shows a valid example
    return Source(IMAGE, text)


def _plain_name(text: str) -> bool:
    from cellship.serve.export import _NAME_RE

    return bool(_NAME_RE.match(text))


def download_step(url: str, model_name: str, image: str, secret: str, python: str,
                  pull_policy: str | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(init container, volume, server mount) that bring ``url`` into
    ``/models/<model_name>`` before the server starts."""
    from cellship.kube import podspec
    from cellship.storage.credentials import secret_env

    target = f"{MODELS_DIR}/{model_name}"
    init = podspec.container(
        "download-model", image, command=[python, "-m", "cellship.storage", "download", url, target],
        env={"PYTHONUNBUFFERED": "1"}, mounts=[{"name": "model", "mountPath": MODELS_DIR}],
        pull_policy=pull_policy)
    init["env"] = list(init.get("env") or []) + secret_env(secret)
    volume = {"name": "model", "emptyDir": {}}
    mount = {"name": "model", "mountPath": MODELS_DIR, "readOnly": True}
    return init, volume, mount


def with_download_step(pod: dict[str, Any], url: str | None, model_name: str, secret: str | None,
                       python: str = "python3") -> dict[str, Any]:
    """A server pod spec with the init step of an s3:// model (unchanged without one)."""
    if not url:
        return pod
    server = pod["containers"][0]
    init, volume, mount = download_step(url, model_name, server["image"], secret or "", python,
                                        server.get("imagePullPolicy"))
    pod["initContainers"] = [init]
    pod["volumes"] = list(pod.get("volumes") or []) + [volume]
    server["volumeMounts"] = list(server.get("volumeMounts") or []) + [mount]
    return pod


def check_s3_model(client: Any, namespace: str, url: str, secret: str | None) -> None:
    """Before any object is made: the Secret's keys may read ``url``, and it holds a
    SavedModel (a ``saved_model.pb``, itself or in version folders)."""
    from cellship.storage import client as store
    from cellship.storage import credentials, sync
    from cellship.storage.url import parse as parse_s3

    if not secret:
        raise UsageError(f"Serving {url} needs --storage-secret NAME: the Secret (in the "
                         "deployment's namespace) with the store's AWS_ACCESS_KEY_ID, "
                         "AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL, which the pods' download "
                         "step reads.")
    where = parse_s3(url)
    found = credentials.read_secret(client, namespace, secret)
    s3 = store.connect(found)
    store.check_access(s3, where, found, write=False)
    try:
        names = sync.remote_names(sync.listing(s3, where))
    except store.store_errors() as err:
        raise store.explain(err, where, found, "list") from None
    if not any(n == "saved_model.pb" or n.endswith("/saved_model.pb") for n in names):
        listed = ", ".join(names[:5]) or "no objects at all"
        raise UsageError(f"{url} holds no SavedModel (no saved_model.pb under it; it holds "
                         f"{listed}). Give the folder of the model, e.g. "
                         f"s3://{where.bucket}/PREFIX/digits, as a job's cellship.job.save(model, "
                         "'digits') writes it.")


def needs_image_message(source: Source, name: str) -> str:
    """The sentence for a model given where an image is needed, with the commands."""
    model = source.ref
    repo = f"REGISTRY/{source.model_name or 'model'}:v1"
    return (f"{model!r} is a model, but Kubernetes runs container images: build one that "
            f"serves it first, then deploy that image:\n"
            f"  cellship build {model} --base {EXAMPLE_BASE} --tag {repo}\n"
            f"  cellship deploy {repo} --name {name}\n"
            f"(REGISTRY: one your cluster's nodes can pull from.) Or do both at once: "
            f"cellship deploy {model} --name {name} --base {EXAMPLE_BASE} --tag {repo}")


def build_image(model: str, base: str, tag: str, kind: str | None = None,
                progress: Callable[[str], None] = lambda _m: None) -> tuple[str, str]:
    """``cellship build`` the model onto ``base`` as ``tag``; -> (digest-pinned image
    reference, model name). Pinned, so a redeploy of a rebuilt tag rolls out exactly it."""
    from cellship.images import build

    result = build(model, base=base, tag=tag, kind=kind, progress=progress)
    progress(f"built and pushed {result.ref} ({result.kind}) as {result.pinned}")
    return result.pinned, result.model.split("/", 1)[0]


def info_from_config(config: Mapping) -> ImageInfo:
    """Model name, port and kind from an image config (``docker inspect``'s ``Config``)."""
    run = config.get("config") or {}
    labels = run.get("Labels") or {}
    env = dict(item.partition("=")[::2] for item in run.get("Env") or [])
    name = labels.get("io.cellship.model") or env.get("MODEL_NAME") or None
    ports = [p.split("/", 1)[0] for p in (run.get("ExposedPorts") or {})
             if p.endswith("/tcp") or "/" not in p]
    port = None
    if "8501" in ports:  # TF Serving exposes 8500 (gRPC) and 8501 (REST)
        port = 8501
    elif len(ports) == 1 and ports[0].isdigit():
        port = int(ports[0])
    return ImageInfo(model_name=name, port=port, kind=labels.get("io.cellship.kind"))


def inspect_image(ref: str, platform: str = "linux/amd64") -> ImageInfo:
    """Read ``ref``'s config from its registry; a UsageError that says to give
    ``--model-name`` when the registry cannot be read."""
    from cellship.images.builder import fetch_base
    from cellship.images.reference import parse
    from cellship.images.registry import Registry, RetryPolicy

    reference = parse(ref)
    try:
        registry = Registry(reference.registry, retry=RetryPolicy(attempts=2), timeout=30.0)
        image = fetch_base(registry, reference, platform)
    except CellshipError as err:
        raise UsageError(
            f"Could not read the image {ref} from its registry to learn which model it serves "
            f"({err}). Give the model's name with --model-name NAME (the NAME in "
            "/v1/models/NAME), and --port if it does not listen on 8501.") from None
    return info_from_config(image.config)
