"""OCI image archives: the built image as one tar file, for machines without a registry.

The file is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) in a
plain tar, which ``podman load -i FILE``, ``skopeo copy oci-archive:FILE ...`` and
containerd's ``ctr images import`` accept. The image is named in index.json by the
``org.opencontainers.image.ref.name`` annotation (the full ``--tag`` reference, so podman
loads it under that name) and by ``io.containerd.image.name`` (the same normalised name, as
``docker save`` writes it): containerd takes that one as is, where it would pass the OCI
one through ``ctr import``'s ``--base-name`` prefix rules; and the kubelet finds an image
only under its normalised name (``docker.io/library/x:v1``, not ``x:v1``). The archive
always holds an OCI manifest: a Docker v2 manifest is converted (same layers and config
bytes, OCI media types), because the layout format is OCI's own and not every reader
accepts Docker types inside it. Base layers are downloaded once into the cache and reused
by later archives.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from cellship.images.cache import cache_dir
from cellship.images.errors import BuildError
from cellship.images.layers import OCI_LAYER, Layer
from cellship.images.registry import OCI_CONFIG, OCI_MANIFEST, Registry, sha256_bytes

if TYPE_CHECKING:
    from cellship.images.builder import BaseImage

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_OCI_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": OCI_LAYER,
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
}


def oci_manifest(layers: Sequence[dict], config: bytes, annotations: dict | None = None) -> bytes:
    descriptors = []
    for desc in layers:
        media = desc.get("mediaType", OCI_LAYER)
        if "foreign" in media:
            raise BuildError("the base image has foreign (Windows) layers, which an OCI "
                             "archive cannot carry")
        descriptors.append({"mediaType": _OCI_TYPES.get(media, media), "size": desc["size"],
                            "digest": desc["digest"]})
    manifest: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "size": len(config),
                                 "digest": sha256_bytes(config)},
                      "layers": descriptors}
    if annotations:
        manifest["annotations"] = annotations
    return json.dumps(manifest, separators=(",", ":")).encode()


def write_archive(path: Path, base_reg: Registry, image: "BaseImage", layers: Sequence[Layer],
                  config: bytes, ref_name: str,
                  progress: Callable[[str], None] = lambda _m: None) -> Path:
    """Write the image (base blobs fetched through ``base_reg``) as an OCI archive."""
    blobs: dict[str, Path | bytes] = {}
    for desc in image.layers:
        digest = desc["digest"]
        cached = cache_dir("blobs", "sha256") / digest.split(":", 1)[1]
        if not cached.exists():
            progress(f"downloading base layer {digest[:19]} for the archive")
            base_reg.download_blob(image.ref.repository, digest, cached)
        blobs[digest] = cached
    for layer in layers:
        blobs[layer.digest] = layer.file()
    annotations = {"org.opencontainers.image.base.name": str(image.ref),
                   "org.opencontainers.image.base.digest": image.manifest.digest}
    manifest = oci_manifest(image.layers + [l.descriptor() for l in layers], config, annotations)
    return write_oci_archive(path, manifest, config, blobs, ref_name, progress=progress)


def write_oci_archive(path: Path, manifest: bytes, config: bytes,
                      blobs: Mapping[str, Path | bytes], ref_name: str,
                      progress: Callable[[str], None] = lambda _m: None) -> Path:
    """Write one image as an OCI archive named ``ref_name`` (a full, normalised reference):
    ``manifest`` (from :func:`oci_manifest`), its ``config``, and every layer in ``blobs``
    (digest -> file or bytes). Written to a ``.partial`` file and renamed, so a reader never
    sees half an archive."""
    blobs = dict(blobs)
    blobs[sha256_bytes(config)] = config
    blobs[sha256_bytes(manifest)] = manifest
    conf = json.loads(config)
    platform = {k: conf[k] for k in ("architecture", "os") if conf.get(k)}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256_bytes(manifest),
                            "size": len(manifest),
                            "annotations": {REF_NAME: ref_name, CONTAINERD_NAME: ref_name},
                            **({"platform": platform} if len(platform) == 2 else {})}]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest in sorted(blobs):
            _add(tar, f"blobs/sha256/{digest.split(':', 1)[1]}", blobs[digest])
        _add(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    os.replace(partial, path)
    progress(f"wrote OCI archive {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


def _info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _info(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add(tar: tarfile.TarFile, name: str, source: Path | bytes) -> None:
    info = _info(name)
    info.mode = 0o644
    if isinstance(source, bytes):
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source))
        return
    with open(source, "rb") as handle:
        info.size = os.fstat(handle.fileno()).st_size
        tar.addfile(info, handle)
