"""The image the real-Kubernetes test tier runs in its pods, as one archive for
``ctr -n k8s.io images import`` (pods then use it with ``imagePullPolicy: Never``).

Nothing can be pulled on this machine, so the image is made here, with cellship's own
daemonless image code (the same layers ``cellship build --kind python`` makes), on the
debootstrapped Debian bookworm python3 base of the image tests:

1. the base (:func:`tests.integration.images_support.python_layout`, an OCI layout);
2. the dependency layer (:func:`cellship.images.pydeps.deps_layer`): TensorFlow (CPU), the
   server's requirements (so the same image can run ``cellship serve``), scikit-learn (the
   bundled datasets the tests train on), papermill + ipykernel + nbclient + nbformat (batch
   runs), cloudpickle (values shipped with ``--ship``), pinned to this venv's versions;
   ``tf-keras`` with ``--no-deps`` (it requires the full ``tensorflow`` wheel: CUDA pieces,
   and it would replace tensorflow-cpu). ~2 GB installed, so it is built once per machine;
3. cellship (the installed source files, as ``cellship build`` ships them), cellship_magics,
   and a ``.pth`` file that puts the dependency folder on ``sys.path``.

Why a ``.pth`` file and not ``PYTHONPATH`` in the image config: cellship's pods set
``PYTHONPATH`` themselves (to the shim package in the job's ConfigMap), which replaces the
image's value, and TensorFlow would vanish. Debian's python3 reads ``.pth`` files in
``/usr/local/lib/python3.11/dist-packages`` whatever the environment says.

Why ``HOME=/tmp``: pods run as uid 1000, which has no passwd entry, so runc sets HOME=/ (not
writable); Jupyter's runtime dir (kernel connection files), IPython and Keras write under
HOME. /tmp is world-writable in the base. Every added file is world-readable (0644/0755).

The archive is cached under ``<cache>/test-images/`` keyed by every input (base manifest
digest, pinned requirements, the content hash of the cellship layer), built under a file
lock (two test processes never build it twice) and renamed into place when complete. The
image is named ``cellship.test/train:<key>``: a name with a registry domain, because the
kubelet normalises image names (``train:x`` would be looked up as
``docker.io/library/train:x``) and ``ctr import`` stores the name as written.

``python -m tests.cluster.image`` prints ``ARCHIVE REF`` on one line (building if needed;
progress goes to stderr).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from cellship.images import archive, layers, pydeps
from cellship.images.cache import cache_dir
from cellship.images.layers import OCI_LAYER, Entry, Layer
from tests.integration import images_support

REPOSITORY = "cellship.test/train"
BASE_PYTHON = "3.11"  # bookworm's python3: the dependency layer is made for it
# What pods need besides the server's requirements (pydeps.serving_requirements adds those).
TRAINING = ("tensorboard", "scikit-learn", "papermill", "ipykernel", "nbclient", "nbformat", "cloudpickle", "boto3")
NO_DEPS = ("tf-keras", *pydeps.SERVING_NO_DEPS)
PTH = f"usr/local/lib/python{BASE_PYTHON}/dist-packages/cellship-site.pth"
ENV = {"HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
KEEP = 2  # archives of other keys kept (each is ~0.5 GB; a source edit makes a new key)
_FORMAT = 1  # bump when the image made for the same inputs changes


def training_image_archive(progress: Callable[[str], None] = lambda _m: None) -> tuple[Path, str]:
    """(OCI archive path, image reference) of the pods' image, built when not cached.

    The first build on a machine takes minutes (the dependency layer); later calls only hash
    cellship's sources (well under a second) unless those changed (then seconds: a new
    small layer and a new archive around the cached ones)."""
    layout = images_support.python_layout()
    base_digest, base_manifest = _base_manifest(layout)
    requirements = pydeps.serving_requirements(TRAINING)
    no_deps = pydeps.pinned(NO_DEPS)
    entries = cellship_entries()
    key = image_key(base_digest, requirements, no_deps, layers.content_key(entries))
    ref = f"{REPOSITORY}:{key}"
    folder = cache_dir("test-images")
    path = folder / f"train-{key}.tar"
    if path.exists():
        return path, ref
    with open(folder / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait, then find the file
        if not path.exists():
            started = time.monotonic()
            deps = pydeps.deps_layer(requirements, BASE_PYTHON, no_deps=no_deps,
                                     progress=progress)
            with tempfile.TemporaryDirectory(dir=folder, prefix="build-") as tmp:
                own = layers.write_layer(entries, Path(tmp) / "cellship.tar.gz",
                                         created_by=f"cellship test image: cellship "
                                                    f"(+cellship_magics, /{PTH}) at {pydeps.SITE}")
                _write(path, ref, layout, base_digest, base_manifest, [deps, own], progress)
            progress(f"built {ref} in {time.monotonic() - started:.0f} s: {path}")
            _prune(folder, keep=path)
    return path, ref


def image_key(base_digest: str, requirements: tuple[str, ...], no_deps: tuple[str, ...],
              cellship_hash: str) -> str:
    """12 hex digits naming the image made from these inputs (also its tag)."""
    text = json.dumps({"format": _FORMAT, "base": base_digest, "python": BASE_PYTHON,
                       "requirements": sorted(requirements), "no_deps": sorted(no_deps),
                       "cellship": cellship_hash, "env": ENV}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cellship_entries() -> list[Entry]:
    """The cellship layer: cellship as ``cellship build`` ships it, cellship_magics next to
    it (``%load_ext cellship`` in a notebook run by papermill), and the ``.pth`` file."""
    import cellship_magics

    entries, _ = pydeps.cellship_entries()
    magics = Path(cellship_magics.__file__).resolve().parent
    entries += [e for e in layers.tree(magics, f"{pydeps.SITE}/cellship_magics")
                if "__pycache__" not in e.path.split("/")]
    entries += layers.parents(PTH)
    entries.append(Entry(PTH, data=f"{pydeps.SITE}\n".encode()))
    return entries


def image_config(base_config: dict, new: list[Layer]) -> dict:
    """The base's config with the new layers' diff_ids and history, and :data:`ENV`."""
    config = copy.deepcopy(base_config)
    created = config.get("created") or "1970-01-01T00:00:00Z"  # no "now": same inputs, same bytes
    config["rootfs"]["diff_ids"] = list(config["rootfs"]["diff_ids"]) + [l.diff_id for l in new]
    config["history"] = list(config.get("history") or []) + [
        {"created": created, "created_by": l.created_by, "comment": "cellship"} for l in new]
    run = config.setdefault("config", {})
    env: dict[str, str] = {}
    for item in [*(run.get("Env") or []), *(f"{k}={v}" for k, v in ENV.items())]:
        name, _, value = item.partition("=")
        env[name] = value
    run["Env"] = [f"{k}={v}" for k, v in env.items()]
    run["Cmd"] = ["python3"]
    run["Labels"] = {**(run.get("Labels") or {}), "io.cellship.image": "cluster-test"}
    return config


def _base_manifest(layout: Path) -> tuple[str, dict]:
    """(digest, parsed manifest) of the one image in an OCI layout."""
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    digest = entry["digest"]
    return digest, json.loads(_blob(layout, digest).read_bytes())


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _write(path: Path, ref: str, layout: Path, base_digest: str, base: dict, new: list[Layer],
           progress: Callable[[str], None]) -> None:
    base_config = json.loads(_blob(layout, base["config"]["digest"]).read_bytes())
    config = json.dumps(image_config(base_config, new), separators=(",", ":")).encode()
    blobs: dict[str, Path | bytes] = {d["digest"]: _blob(layout, d["digest"])
                                      for d in base["layers"]}
    for layer in new:
        assert layer.path is not None
        blobs[layer.digest] = layer.path
    manifest = archive.oci_manifest(
        base["layers"] + [l.descriptor(OCI_LAYER) for l in new], config,
        {"org.opencontainers.image.base.name": f"cellship-test-base/{layout.name}",
         "org.opencontainers.image.base.digest": base_digest})
    archive.write_oci_archive(path, manifest, config, blobs, ref, progress=progress)


def _prune(folder: Path, keep: Path) -> None:
    """Delete all but the newest :data:`KEEP` other archives (a process importing one keeps
    its open file: unlinking does not disturb it)."""
    others = sorted((p for p in folder.glob("train-*.tar") if p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[KEEP:]:
        old.unlink(missing_ok=True)


def main() -> None:
    path, ref = training_image_archive(progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(path, ref)


if __name__ == "__main__":
    main()
