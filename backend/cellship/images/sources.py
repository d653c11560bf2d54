"""What ``cellship build MODEL`` puts in the image: one version of one SavedModel.

MODEL means exactly what it means to ``cellship serve`` (:func:`cellship.serve.export.resolve`):
a model name in cellship's model repository, a SavedModel directory, or a TF-Serving-style
directory of numbered versions. Without ``--version`` the highest version is taken, the
one TF Serving would serve; a bare SavedModel directory is version 1 unless its own name is
a number or ``--version`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cellship.errors import UsageError
from cellship.images.errors import BuildError
from cellship.serve import export as models


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
    """Find the SavedModel that MODEL names (ModelNotFound says what exists)."""
    label, base = models.resolve(model)
    try:
        name = models.check_name(name or label)
    except UsageError as err:
        raise BuildError(f"{err} It becomes /models/<name> in the image; pass --name.") from None
    if version is not None and version < 0:
        raise BuildError(f"model versions are non-negative integers, not {version}")
    if (base / "saved_model.pb").is_file():  # one SavedModel: --version numbers it
        number = version if version is not None else next(iter(models.version_dirs(base)))
        return ModelSource(name, number, base)
    versions = models.version_dirs(base)
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise BuildError(f"model {name!r} has no version {chosen} in {base}; it has "
                         f"{', '.join(map(str, sorted(versions)))}")
    return ModelSource(name, chosen, versions[chosen])
