"""Which image a cluster job runs in, checked before any object is created.

- ``--image`` (or ``$CELLSHIP_K8S_IMAGE``) wins. An official ``tensorflow/tensorflow`` image
  of 2.16 or later is refused while the job trains with tf-keras (``TF_USE_LEGACY_KERAS=1``,
  cellship's default, as on the local backend): those images have Keras 3 only, so every
  replica would fail at its first import; the sentence says the two fixes.
- Without one, the job runs in the official image of the kernel's TensorFlow version
  (``-gpu`` when it asks for GPUs) plus a tf-keras layer that cellship builds and pushes to
  ``--registry`` (:mod:`cellship.images.training`: once per base digest); the line printed
  names both. Without a registry either, one sentence says what to give.

``$CELLSHIP_TF_IMAGE_REPOSITORY`` names where the official images are pulled from (default
``tensorflow/tensorflow`` on Docker Hub), for a registry mirror: the tests use one, and so
do clusters without Docker Hub access.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from typing import Callable, Mapping

from cellship.errors import UsageError
from cellship.images.errors import ImageError
from cellship.images.reference import parse
from cellship.images.training import REPOSITORY, with_tf_keras
from cellship.kube.options import KubernetesOptions

OFFICIAL = "tensorflow/tensorflow"
REPOSITORY_ENV = "CELLSHIP_TF_IMAGE_REPOSITORY"
KERAS_3_ONLY_FROM = (2, 16)  # the first official images without Keras 2
_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos",
                  "tf-nightly")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def kernel_tf_version() -> str:
    """This interpreter's TensorFlow version (from its distribution: no import)."""
    for name in _DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    raise UsageError("No TensorFlow is installed here, so cellship cannot pick the matching "
                     "official image: give --image IMAGE (with Python, TensorFlow and tf-keras).")


def official_repository(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return (environ.get(REPOSITORY_ENV) or "").strip().rstrip("/") or OFFICIAL


def official_image(version: str, gpus: int, environ: Mapping[str, str] | None = None) -> str:
    """``tensorflow/tensorflow:<version>[-gpu]`` (release versions only: the official tags)."""
    release = re.match(r"^\d+\.\d+\.\d+", version)
    if release is None:
        raise UsageError(f"TensorFlow {version} here has no official image to match: give "
                         "--image IMAGE (with Python, TensorFlow and tf-keras).")
    return f"{official_repository(environ)}:{release.group(0)}{'-gpu' if gpus > 0 else ''}"


def _version(tag: str | None) -> tuple[int, int] | None:
    found = re.match(r"^(\d+)\.(\d+)", tag or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def is_official(image: str, environ: Mapping[str, str] | None = None) -> bool:
    ref = parse(image)
    repositories = {f"docker.io/{OFFICIAL}", f"registry-1.docker.io/{OFFICIAL}",
                    f"index.docker.io/{OFFICIAL}"}
    mirror = parse(official_repository(environ) + ":x")
    repositories.add(f"{mirror.registry}/{mirror.repository}")
    return f"{ref.registry}/{ref.repository}" in repositories


def check_image(image: str, legacy_keras: bool, environ: Mapping[str, str] | None = None) -> None:
    """Refuse an image the job cannot train in, when that is known without pulling it."""
    if not legacy_keras or not is_official(image, environ):
        return
    ref = parse(image)
    version = _version(ref.tag)
    if ref.tag in (None, "latest", "latest-gpu") or (version and version >= KERAS_3_ONLY_FROM):
        raise UsageError(
            f"{image} has Keras 3 only (the official TensorFlow images lack tf-keras since "
            "2.16), and this job trains with tf-keras (TF_USE_LEGACY_KERAS=1, as on the local "
            "backend), so every replica would fail at its first import. Drop --image and give "
            "--registry HOST (cellship then adds tf-keras to the official image and pushes it "
            f"there), or use an image built FROM it with `pip install tf-keras=="
            f"{(ref.tag or '').split('-')[0] if version else '<its TensorFlow version>'}`, or pass "
            "--env TF_USE_LEGACY_KERAS=0 for Keras 3 with a custom training loop.")


def planned_image(options: KubernetesOptions, gpus: int, env: Mapping[str, str]) -> str:
    """What :func:`choose_image` would run, without building or asking any registry (for
    ``--dry-run``): the given image, the official one, or a placeholder naming how the
    default image will be made."""
    legacy = env.get("TF_USE_LEGACY_KERAS", "1") == "1"
    if options.image:
        check_image(options.image, legacy)
        return options.image
    version = kernel_tf_version()
    official = official_image(version, gpus)
    if not legacy:
        return official
    _need_registry(options, official)
    return (f"{str(options.registry).rstrip('/')}/{REPOSITORY}:<made at submit: {official} "
            f"+ tf-keras {version}>")


def _need_registry(options: KubernetesOptions, official: str) -> None:
    if not options.registry:
        raise UsageError(
            f"No --image given, and the official {official} (this kernel's TensorFlow) lacks "
            "tf-keras, which Keras training under MultiWorkerMirroredStrategy needs: give "
            "--registry HOST[/PATH] (or $CELLSHIP_K8S_REGISTRY), a registry the cluster pulls "
            "from, and cellship adds tf-keras to that image and pushes it there once; or give "
            "--image IMAGE with Python, TensorFlow and tf-keras.")


def choose_image(options: KubernetesOptions, gpus: int, env: Mapping[str, str], *,
                 say: Callable[[str], None] = _stderr) -> str:
    """The image the job's pods run (see the module docstring); builds the default once."""
    planned = planned_image(options, gpus, env)
    if options.image:
        return planned
    version = kernel_tf_version()
    official = official_image(version, gpus)
    if planned == official:
        say(f"cellship: no --image given: the job runs in {official} (this kernel's TensorFlow "
            "version, Keras 3).")
        return official
    assert options.registry is not None  # planned_image checked it
    try:
        made = with_tf_keras(official, options.registry, version, progress=say)
    except ImageError as err:
        raise UsageError(f"cellship could not make the default image ({official} plus tf-keras "
                         f"{version}, for --registry {options.registry}): {err}") from None
    how = (f"built in {made.seconds:.0f} s and pushed" if made.built
           else "made by an earlier job, found")
    say(f"cellship: no --image given: the job runs in {official} plus tf-keras {version} "
        f"({how}: {made.ref})")
    return made.ref
