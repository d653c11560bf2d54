"""The image a cluster job runs in when the user names none: the official TensorFlow image
of the kernel's TensorFlow version plus one layer with tf-keras.

Why a layer: the official ``tensorflow/tensorflow`` images ship Keras 3 only (since 2.16),
and Keras training under MultiWorkerMirroredStrategy, which cellship's local backend runs
with ``TF_USE_LEGACY_KERAS=1``, needs the tf-keras package of the same version. The layer
is made by cellship's own append builder (no daemon, nothing run in the image): pip installs
the pure-Python tf-keras wheel without its dependencies (it would pull the full CUDA
``tensorflow`` wheel) into :data:`cellship.images.pydeps.SITE`, and the image's PYTHONPATH
puts that first (cellship's pod bootstrap keeps the image's PYTHONPATH behind its shim).

The result is pushed to a registry the user names, tagged by everything it is made of (the
base's manifest digest, the tf-keras version, this format), so it is built once per base
digest: a later job finds the tag and only asks the registry for it (one HEAD request).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable

from cellship.images import pydeps
from cellship.images.builder import DEFAULT_RETRY, append, fetch_base
from cellship.images.reference import parse
from cellship.images.registry import Registry

REPOSITORY = "cellship-tensorflow"  # under the user's registry (and path)
LABEL_TF_KERAS = "io.cellship.tf-keras"
LABEL_BASE = "io.cellship.base"
_FORMAT = 1  # bump when the image made from the same inputs changes


@dataclass(frozen=True)
class TrainingImage:
    """The image jobs run: ``ref`` is pinned by digest (what the pods get)."""

    ref: str
    tag: str
    base: str
    base_digest: str
    tf_keras: str
    built: bool  # False: found in the registry, made by an earlier job
    seconds: float


def training_tag(registry: str, base_tag: str | None, base_digest: str, tf_keras: str) -> str:
    """Where the image for this base and tf-keras version lives under ``registry``."""
    key = hashlib.sha256(json.dumps({"format": _FORMAT, "base": base_digest, "tf_keras": tf_keras,
                                     "site": pydeps.SITE}, sort_keys=True).encode()).hexdigest()
    return f"{registry.rstrip('/')}/{REPOSITORY}:{base_tag or 'latest'}-{key[:12]}"


def with_tf_keras(base: str, registry: str, tf_keras: str, *, insecure: bool = False,
                  progress: Callable[[str], None] = lambda _m: None) -> TrainingImage:
    """``base`` plus tf-keras ``tf_keras`` in ``registry``: found there, or built and pushed."""
    started = time.monotonic()
    base_ref = parse(base)
    base_reg = Registry(base_ref.registry, insecure=insecure, retry=DEFAULT_RETRY)
    image = fetch_base(base_reg, base_ref)
    tag = training_tag(registry, base_ref.tag, image.manifest.digest, tf_keras)
    target = parse(tag)
    target_reg = Registry(target.registry, insecure=insecure, retry=DEFAULT_RETRY)
    found = target_reg.manifest_digest(target.repository, target.reference)
    built = found is None
    if found is None:
        layer = pydeps.deps_layer((), no_deps=(f"tf-keras=={tf_keras}",), progress=progress)

        def configure(config: dict) -> None:
            run = config["config"]
            env = dict(item.partition("=")[::2] for item in run.get("Env") or [])
            env["PYTHONPATH"] = pydeps.pythonpath_with_site(env.get("PYTHONPATH"))
            run["Env"] = [f"{k}={v}" for k, v in env.items()]
            run["Labels"] = {**(run.get("Labels") or {}), LABEL_TF_KERAS: tf_keras,
                             LABEL_BASE: f"{base_ref}@{image.manifest.digest}"}
            config["history"].append({"created": config["created"], "empty_layer": True,
                                      "comment": "cellship",
                                      "created_by": f"ENV PYTHONPATH={env['PYTHONPATH']}"})

        found = append(base, tag, [layer], configure, insecure=insecure, progress=progress)
    return TrainingImage(ref=f"{target.registry}/{target.repository}@{found}", tag=tag,
                         base=str(base_ref), base_digest=image.manifest.digest,
                         tf_keras=tf_keras, built=built, seconds=time.monotonic() - started)


__all__ = ["TrainingImage", "with_tf_keras", "training_tag", "LABEL_TF_KERAS", "REPOSITORY"]
