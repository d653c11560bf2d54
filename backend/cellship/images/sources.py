"""What ``cellship build MODEL`` puts in the image: one version of one SavedModel.

MODEL is either a name in cellship's model repository
(``<cellship home>/models/<name>/<version>/saved_model.pb``) or a path: a SavedModel
directory (``saved_model.pb`` inside), or a TF-Serving-style base directory whose numeric
subdirectories are versions. Without ``--version`` the highest version is taken, which is
the one TF Serving would serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from .errors import BuildError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ModelSource:
    """A SavedModel directory and where it goes: ``/models/<name>/<version>``."""

    name: str
    version: int
    path: Path

    @property
    def image_dir(self) -> str:
        return f"/models/{self.name}/{self.version}"


def resolve_model(model: str | Path, *, name: str | None = None,
                  version: int | None = None) -> ModelSource:
    """Find the SavedModel that MODEL names; :class:`BuildError` says what is missing."""
    path = Path(model).expanduser()
    text = str(model)
    looks_like_path = "/" in text or text.startswith(".") or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise BuildError(f"{path} is not a directory. Give a SavedModel directory (with "
                             "saved_model.pb), a base directory of numbered versions, or the "
                             "name of a model in cellship's model repository.")
        return _from_path(path.resolve(), name, version)
    return _from_repository(text, name, version)


def _from_path(path: Path, name: str | None, version: int | None) -> ModelSource:
    if (path / "saved_model.pb").is_file():
        if path.name.isdigit() and name is None:
            name, version = path.parent.name, version if version is not None else int(path.name)
        return ModelSource(_check_name(name or path.name),
                           _positive(1 if version is None else version), path)
    versions = _versions(path)
    if not versions:
        raise BuildError(f"{path} has no saved_model.pb and no numbered version directories "
                         "holding one. Export the model with tf.saved_model.save(model, PATH) "
                         "or cellship.job.save(model, NAME) first.")
    return _pick(_check_name(name or path.name), path, versions, version)


def _from_repository(model: str, name: str | None, version: int | None) -> ModelSource:
    _check_name(model)
    base = paths.home() / "models" / model
    versions = _versions(base) if base.is_dir() else {}
    if not versions:
        known = sorted(p.name for p in (paths.home() / "models").glob("*") if _versions(p))
        raise BuildError(f"no model named {model!r} in cellship's model repository "
                         f"({paths.home() / 'models'})"
                         + (f"; it has: {', '.join(known)}" if known else "; it is empty")
                         + ". Give a model name from there or a path to a SavedModel directory.")
    return _pick(_check_name(name or model), base, versions, version)


def _versions(base: Path) -> dict[int, Path]:
    found = {}
    for child in base.iterdir() if base.is_dir() else ():
        if child.name.isdigit() and (child / "saved_model.pb").is_file():
            found[int(child.name)] = child
    return found


def _pick(name: str, base: Path, versions: dict[int, Path], version: int | None) -> ModelSource:
    if version is None:
        version = max(versions)
    if version not in versions:
        raise BuildError(f"model {name!r} has no version {version} in {base}; it has "
                         f"{', '.join(map(str, sorted(versions)))}")
    return ModelSource(name, version, versions[version])


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BuildError(f"{name!r} cannot be a model name in an image (it becomes "
                         "/models/<name> and the URL /v1/models/<name>); use letters, digits, "
                         "_ . - (for example --name digits)")
    return name


def _positive(version: int) -> int:
    if version < 0:
        raise BuildError(f"model versions are non-negative integers, not {version}")
    return version
