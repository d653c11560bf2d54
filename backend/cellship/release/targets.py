"""Where a release goes: the small interface a target fills in, and the local one.

A target knows four things: which version it serves now, how to stage a new version where
nothing serves it yet, how to canary it, and how to promote it or move it aside. The
pipeline (:mod:`cellship.release.pipeline`) owns the order, the record and the cleanup; the
Kubernetes target (image build and push, a canary Deployment beside the serving one,
traffic by replica ratio: :mod:`cellship.release.kubernetes_target`) is another
:class:`Target`.

The local target is the model repository ``cellship serve`` reads (TF Serving's layout,
``MODEL/<version>/``). The version served by default is the newest one on disk: that is
TF Serving's ``latest`` version policy, which our server implements (it has no version
labels), so promoting a version is renaming it into place as the newest number, and going
back is moving the newer numbers aside. Nothing is ever deleted: a rejected or rolled-back
version goes to ``MODEL/.rejected/<version>-<release id>/``, which no server loads (only
numbered directories are versions) and from which it can be moved back by hand.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from cellship.errors import ReleaseError, UsageError
from cellship.release.canary import CanaryLimits, CanaryReport, run_canary
from cellship.serve.export import (
    ModelVersion,
    check_saved_model,
    export_saved_model,
    root,
    version_dirs,
)

REJECTED = ".rejected"  # where versions go aside (hidden: no server takes it for a version)


@dataclass(frozen=True)
class Staged:
    """A new version stored where no user's request reaches it yet."""

    model: ModelVersion
    canary_dir: Path  # the canary repository it lives in until promoted or moved aside
    record: Mapping[str, Any] = field(default_factory=dict)  # kept in the release record


class Target(ABC):
    """One place a release can go (see the module's docstring)."""

    name: str

    def check(self, model: str) -> str:
        """Refuse a model this target cannot release (before anything runs)."""
        return model

    def where(self) -> dict[str, Any]:
        """What a later process needs to find this target again (kept in the release
        record's details; :func:`target_of_record` reads it back)."""
        return {}

    @abstractmethod
    def current(self, model: str) -> ModelVersion | None:
        """The version served by default now (None: nothing is served yet)."""

    @abstractmethod
    def signature(self, saved_model: Path) -> Mapping[str, Any]:
        """The serving signature of a SavedModel (as the repository's manifest keeps it)."""

    @abstractmethod
    def stage(self, saved_model: Path, model: str, release_id: str, *, current: ModelVersion | None,
              source: Mapping[str, Any], parameters: Mapping[str, Any],
              metrics: Mapping[str, Any], example: Mapping[str, Any] | None) -> Staged:
        """Check and store the new version beside the current one, serving no one yet."""

    @abstractmethod
    def canary(self, staged: Staged, current: ModelVersion | None,
               example: Mapping[str, Any] | None, limits: CanaryLimits) -> CanaryReport:
        """Smoke-test and watch the staged version; the report names a failed check."""

    @abstractmethod
    def promote(self, staged: Staged) -> ModelVersion:
        """Make the staged version the one served by default."""

    @abstractmethod
    def reject(self, staged: Staged, release_id: str) -> Path | str:
        """Move the staged version aside (never delete it); where it went."""

    @abstractmethod
    def rollback(self, model: str, to: int | None,
                 release_id: str) -> tuple[int, int, Sequence[Path | str]]:
        """Serve version ``to`` (default: the one before the current) again: (from, to,
        where the newer versions went)."""

    @abstractmethod
    def finish_interrupted(self, model: str, release_id: str,
                           version: int | None) -> tuple[bool, Sequence[Path | str]]:
        """Clean up after release ``release_id``, whose process ended mid-release: (whether
        its version ``version`` had been promoted already, where what it left went)."""


class LocalTarget(Target):
    """The local model repository (``$CELLSHIP_HOME/models``, or ``repository``)."""

    name = "local"

    def __init__(self, repository: Path | None = None, server: str | None = None,
                 load_timeout_s: float = 120.0) -> None:
        self.repository = Path(repository).expanduser().resolve() if repository else root()
        self.server = server.rstrip("/") if server else None
        self.load_timeout_s = load_timeout_s

    def where(self) -> dict[str, Any]:
        return {"repository": str(self.repository)}

    def base(self, model: str) -> Path:
        return self.repository / model

    def versions(self, model: str) -> dict[int, Path]:
        return version_dirs(self.base(model))

    def current(self, model: str) -> ModelVersion | None:
        from cellship.serve.export import _read_manifest

        versions = self.versions(model)
        if not versions:
            return None
        number = max(versions)
        return ModelVersion(model, number, versions[number], _read_manifest(versions[number]))

    def signature(self, saved_model: Path) -> Mapping[str, Any]:
        # The canary server runs in this process: load TensorFlow here once, so that the
        # checks of the export run in-process too instead of in a second interpreter each.
        import tensorflow  # noqa: F401

        return check_saved_model(saved_model)["signatures"]["serving_default"]

    def stage(self, saved_model: Path, model: str, release_id: str, *, current: ModelVersion | None,
              source: Mapping[str, Any], parameters: Mapping[str, Any],
              metrics: Mapping[str, Any], example: Mapping[str, Any] | None) -> Staged:
        canary_dir = self.base(model) / f".canary-{release_id}"
        (canary_dir / model).mkdir(parents=True)
        if current is not None:  # the current version beside it: a link, not a copy
            os.symlink(current.path, canary_dir / model / str(current.version))
        result = export_saved_model(saved_model, model, source=source, parameters=parameters,
                                    metrics=metrics, example=example, repository=canary_dir)
        return Staged(result.model, canary_dir)

    def canary(self, staged: Staged, current: ModelVersion | None,
               example: Mapping[str, Any] | None, limits: CanaryLimits) -> CanaryReport:
        return run_canary(staged.canary_dir / staged.model.name, staged.model.name,
                          staged.model.version, None if current is None else current.version,
                          example, limits)

    def promote(self, staged: Staged) -> ModelVersion:
        name, number = staged.model.name, staged.model.version
        final = self.base(name) / str(number)
        if final.exists():
            raise ReleaseError(f"Version {number} of {name} appeared in {self.base(name)} while "
                               "the release ran (an export by hand?); the new version was not "
                               "promoted.", "promote")
        os.rename(staged.model.path, final)  # atomic: a watching server never sees half of it
        self._drop_canary(staged.canary_dir)
        promoted = ModelVersion(name, number, final, staged.model.manifest)
        if self.server:
            try:
                self._wait_served(name, number)
            except ReleaseError:
                self._aside(name, final, f"{number}-unloadable")
                raise
        return promoted

    def reject(self, staged: Staged, release_id: str) -> Path:
        aside = self._aside(staged.model.name, staged.model.path, f"{staged.model.version}-{release_id}")
        self._drop_canary(staged.canary_dir)
        return aside

    def rollback(self, model: str, to: int | None, release_id: str) -> tuple[int, int, list[Path]]:
        versions = self.versions(model)
        if not versions:
            raise ReleaseError(f"Model {model} has no versions in {self.base(model)}; nothing to "
                               "roll back.", "rollback")
        current = max(versions)
        if to is None:
            older = [v for v in versions if v < current]
            if not older:
                raise ReleaseError(f"Version {current} is the only version of {model}; there is "
                                   "none before it to go back to.", "rollback")
            to = max(older)
        if to not in versions:
            raise UsageError(f"Model {model} has no version {to} in {self.base(model)}; its "
                             f"versions: {', '.join(map(str, sorted(versions)))} (versions moved "
                             f"aside are kept in {self.base(model) / REJECTED}; move one back "
                             "by hand to serve it again).")
        if to == current:
            raise UsageError(f"Version {to} of {model} is already the one served.")
        # Oldest first: the served version (the newest) stays until it is the last to go,
        # so no version in between ever answers.
        moved = [self._aside(model, versions[v], f"{v}-{release_id}") for v in sorted(versions) if v > to]
        if self.server:
            self._wait_served(model, to)
        return current, to, moved

    def finish_interrupted(self, model: str, release_id: str,
                           version: int | None) -> tuple[bool, list[Path]]:
        """Its canary repository ``MODEL/.canary-<id>/`` goes: the link to the current
        version is removed, everything real in it (the staged version, or an export's
        ``.incoming-*`` folder when it was killed mid-stage) is moved to ``.rejected/``
        (never deleted). Promoted already: the rename into place had happened (the version
        in place carries this release's id in its manifest)."""
        from cellship.serve.export import _read_manifest

        base = self.base(model)
        promoted = False
        if version is not None:
            source = _read_manifest(base / str(version)).get("source")
            promoted = isinstance(source, dict) and source.get("release") == release_id
        moved: list[Path] = []
        canary_dir = base / f".canary-{release_id}"
        if not canary_dir.is_dir():
            return promoted, moved
        for model_dir in sorted(canary_dir.iterdir()):
            if model_dir.is_dir() and not model_dir.is_symlink():
                for entry in sorted(model_dir.iterdir()):
                    if entry.is_symlink():
                        entry.unlink()
                    else:
                        moved.append(self._aside(model, entry, f"{entry.name}-{release_id}"))
                model_dir.rmdir()
            elif model_dir.is_symlink():
                model_dir.unlink()
            else:
                moved.append(self._aside(model, model_dir, f"{model_dir.name}-{release_id}"))
        canary_dir.rmdir()
        return promoted, moved

    # -- helpers ------------------------------------------------------------------------------
    def _aside(self, model: str, path: Path, label: str) -> Path:
        target = self.base(model) / REJECTED
        target.mkdir(exist_ok=True)
        aside = target / label
        os.rename(path, aside)
        return aside

    @staticmethod
    def _drop_canary(canary_dir: Path) -> None:
        """Remove the canary repository, which holds only the link to the current version
        by now (the staged version was renamed out of it)."""
        for model_dir in canary_dir.iterdir():
            for entry in model_dir.iterdir():
                if entry.is_symlink():
                    entry.unlink()
            model_dir.rmdir()  # fails (and keeps it) if anything real is left
        canary_dir.rmdir()

    def _wait_served(self, model: str, version: int) -> None:
        """Wait until the ``--server`` answers unversioned requests with ``version``."""
        url = f"{self.server}/v1/models/{model}"
        end = time.monotonic() + self.load_timeout_s
        states: dict[int, str] = {}
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
                states = {int(s["version"]): s["state"] for s in body.get("model_version_status", [])}
                available = [v for v, s in states.items() if s == "AVAILABLE"]
                if available and max(available) == version:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise ReleaseError(f"The server {self.server} did not serve version {version} of {model} "
                           f"within {self.load_timeout_s:.0f} s (versions it reports: {states}).",
                           "promote")


def get_target(name: str, repository: Path | None = None, server: str | None = None,
               **kubernetes: Any) -> Target:
    """The target ``--to`` names; ``kubernetes``: the options of
    :class:`cellship.release.kubernetes_target.KubernetesTarget` (registry, base, ...)."""
    if name == "local":
        return LocalTarget(repository, server)
    if name == "kubernetes":
        from cellship.release.kubernetes_target import KubernetesTarget

        return KubernetesTarget.from_options(**kubernetes)
    raise UsageError(f"Unknown release target {name!r}: use --to local or --to kubernetes.")


def target_of_record(name: str, details: Mapping[str, Any], **more: Any) -> Target:
    """The target a recorded release went to, from what :meth:`Target.where` kept."""
    if name == "kubernetes":
        from cellship.release.kubernetes_target import KubernetesTarget

        return KubernetesTarget.from_record(details, **more)
    repository = details.get("repository")
    return get_target(name, Path(repository) if repository else None)
