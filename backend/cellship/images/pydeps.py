"""The layers of a ``--kind python`` image: cellship's server and what it needs to run.

Two layers, in the order they change least to most (so a rebuild re-sends only the later):

1. dependencies: TensorFlow and the server's other requirements, ``pip install --target``
   ``/opt/cellship/site-packages``, pinned to the versions installed here (the image serves
   with the TensorFlow the model was made with). This layer is ~2 GB installed and takes
   minutes to make, so it is built once per (requirements, Python version, platform) and
   kept in the cache (``<cache>/layers/deps-<key>.tar.gz`` + ``.json``): every later build
   on the machine reuses the file, and the registry (or podman) already has its digest.
   ``.pyc`` files are compiled in (unchecked-hash, PYTHONHASHSEED=0, so they stay
   reproducible): without them every container start recompiles TensorFlow (~15 s).
2. cellship: the source files of the installed ``cellship`` package plus a minimal
   dist-info, copied rather than built into a wheel: no build backend, no network, a few
   milliseconds, and the files are the ones that ran here.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Sequence

from cellship.images.cache import cache_dir
from cellship.images.errors import BuildError
from cellship.images.layers import DEFAULT_LEVEL, Entry, Layer, parents, tree, write_layer

SITE = "/opt/cellship/site-packages"
# What `python -m cellship.cli serve` imports outside the standard library (cellship.cli:
# platformdirs; cellship.processes: psutil; cellship.serve: TensorFlow, aiohttp, orjson,
# prometheus-client, grpcio for the gRPC port, and uvloop when present). A serving extra of
# cellship (if the distribution declares one) is added.
BASE_REQUIREMENTS = ("tensorflow-cpu", "platformdirs", "psutil", "aiohttp", "orjson",
                     "prometheus-client", "uvloop", "grpcio")
# Installed without their dependencies: TF Serving's gRPC protos, whose package depends on
# the full `tensorflow` wheel (it would add a second TensorFlow beside tensorflow-cpu).
SERVING_NO_DEPS = ("tensorflow-serving-api",)
SERVING_EXTRAS = ("serve", "serving")
_FORMAT = 1  # bump when the way the layer is made changes
_MANYLINUX = ["manylinux2014_x86_64"] + [f"manylinux_2_{n}_x86_64" for n in range(17, 37)]


def serving_requirements(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The server's requirements, each pinned to the version installed here when it is."""
    names = list(BASE_REQUIREMENTS)
    try:
        for req in metadata.requires("cellship") or []:
            marker = req.split(";", 1)[1] if ";" in req else ""
            if any(re.search(rf"extra\s*==\s*['\"]{e}['\"]", marker) for e in SERVING_EXTRAS):
                names.append(req.split(";", 1)[0].strip())
    except metadata.PackageNotFoundError:
        pass
    return pinned([*names, *extra])


def pinned(requirements: Iterable[str]) -> tuple[str, ...]:
    """``requirements`` sorted and deduplicated by project name (a later one wins), a bare
    project name pinned to the version installed here (so the image runs what ran here, and
    pip finds the same wheels in its cache); a requirement with a specifier stays as given."""
    out: dict[str, str] = {}
    for req in requirements:
        project = re.split(r"[\s<>=!~\[;(]", req.strip(), maxsplit=1)[0]
        key = re.sub(r"[-_.]+", "-", project).lower()
        if project == req.strip():
            try:
                req = f"{project}=={metadata.version(project)}"
            except metadata.PackageNotFoundError:
                pass
        out[key] = req.strip()
    return tuple(sorted(out.values()))


def pythonpath_with_site(old: str | None) -> str:
    """An image's PYTHONPATH with :data:`SITE` (where dependency layers install) first."""
    return SITE + (f":{old}" if old and old != SITE else "")


def host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def deps_key(requirements: Sequence[str], python: str, no_deps: Sequence[str] = ()) -> str:
    spec: dict = {"format": _FORMAT, "requirements": sorted(requirements), "python": python,
                  "site": SITE}
    if no_deps:  # only when given: the keys (and cached files) of existing layers stay valid
        spec["no_deps"] = sorted(no_deps)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def deps_layer(requirements: Sequence[str], python: str | None = None, *,
               no_deps: Sequence[str] = (), level: int = DEFAULT_LEVEL,
               progress: Callable[[str], None] = lambda _m: None) -> Layer:
    """The dependency layer for ``requirements`` on Python ``python`` (X.Y, default: this
    interpreter's), from the cache or built now (and cached). ``no_deps`` are installed
    after them without their dependencies (``tf-keras`` requires the full ``tensorflow``
    wheel, which would pull CUDA pieces and replace ``tensorflow-cpu``)."""
    python = python or host_python()
    key = deps_key(requirements, python, no_deps)
    folder = cache_dir("layers")
    path, meta = folder / f"deps-{key}.tar.gz", folder / f"deps-{key}.json"
    with open(folder / f"deps-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per key; the others wait, then reuse
        cached = _cached(path, meta)
        if cached is not None:
            return cached
        every = [*requirements, *(f"{r} (--no-deps)" for r in no_deps)]
        progress(f"building the dependency layer once for this machine ({', '.join(every)}"
                 f"; Python {python}); later builds reuse {path}")
        layer = _build_deps(requirements, python, path, level, no_deps)
        record = asdict(layer)
        record.update(path=str(layer.path), requirements=list(requirements), python=python)
        if no_deps:
            record["no_deps"] = list(no_deps)
        meta.write_text(json.dumps(record, indent=1))
        return layer


def _cached(path: Path, meta: Path) -> Layer | None:
    try:
        record = json.loads(meta.read_text())
        if path.stat().st_size != record["size"]:
            return None
    except (OSError, ValueError, KeyError):
        return None
    return Layer(path=path, digest=record["digest"], diff_id=record["diff_id"],
                 size=record["size"], uncompressed_size=record["uncompressed_size"],
                 created_by=record.get("created_by", ""))


def pip_commands(requirements: Sequence[str], python: str, site: Path,
                 no_deps: Sequence[str] = ()) -> list[list[str]]:
    """The pip runs that fill ``site``: one resolving ``requirements``, then (when given)
    one installing ``no_deps`` without dependencies; for another Python version, wheels
    only, for that version and manylinux x86_64."""
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-input", "--no-compile", "--no-warn-script-location", "--target", str(site)]
    if python != host_python():
        base += ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
        for tag in _MANYLINUX:
            base += ["--platform", tag]
    runs = [base + list(requirements)] if requirements else []
    if no_deps:
        runs.append(base + ["--no-deps", *no_deps])
    return runs


def _build_deps(requirements: Sequence[str], python: str, out: Path, level: int,
                no_deps: Sequence[str] = ()) -> Layer:
    with tempfile.TemporaryDirectory(prefix="cellship-deps-") as tmp:
        stage = Path(tmp)
        site = stage / SITE.lstrip("/")
        for cmd in pip_commands(requirements, python, site, no_deps):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BuildError("pip could not install the server's dependencies for the "
                                 f"image ({' '.join(cmd[cmd.index(str(site)) + 1:])}; Python "
                                 f"{python}):\n{done.stderr.strip()[-2000:]}\nCheck the package "
                                 "index is reachable, or build with --deps-from-base on a base "
                                 "image that already has TensorFlow.")
        shutil.rmtree(site / "bin", ignore_errors=True)  # scripts with this machine's shebang
        for junk in site.rglob("__pycache__"):
            shutil.rmtree(junk, ignore_errors=True)
        if python == host_python():
            env = dict(os.environ, PYTHONHASHSEED="0")
            subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                            "--invalidation-mode", "unchecked-hash", "-s", str(stage), "-p", "/",
                            str(site)], env=env, capture_output=True, check=False)
        created_by = f"cellship build: pip install --target {SITE} " + " ".join(requirements)
        if no_deps:
            created_by += " && pip install --no-deps " + " ".join(no_deps)
        return write_layer(tree(site, SITE), out, level=level, created_by=created_by)


def cellship_entries() -> tuple[list[Entry], str]:
    """cellship's own package (source files) at ``SITE/cellship`` with a dist-info, so
    ``importlib.metadata.version("cellship")`` works in the image; and the layer's
    history line."""
    import cellship

    package = Path(cellship.__file__).resolve().parent
    entries: list[Entry] = parents(f"{SITE}/cellship")
    for entry in tree(package, f"{SITE}/cellship"):
        parts = entry.path.split("/")
        if "__pycache__" in parts or entry.path.endswith((".pyc", ".pyo")):
            continue
        entries.append(entry)
    version = cellship.__version__
    info = f"{SITE}/cellship-{version}.dist-info"
    entries.append(Entry(info, "dir", mode=0o755))
    entries.append(Entry(f"{info}/METADATA", data=(
        f"Metadata-Version: 2.1\nName: cellship\nVersion: {version}\n").encode()))
    entries.append(Entry(f"{info}/top_level.txt", data=b"cellship\n"))
    try:
        points = metadata.distribution("cellship").read_text("entry_points.txt")
    except metadata.PackageNotFoundError:
        points = None
    if points:
        entries.append(Entry(f"{info}/entry_points.txt", data=points.encode()))
    return entries, f"cellship build: cellship {version} at {SITE}/cellship"
