"""Container images without a Docker daemon: ``cellship build``.

- :mod:`.reference`   image references with Docker's defaults
- :mod:`.layers`      reproducible tar.gz layers (digest + diff_id while writing)
- :mod:`.registry`    a small OCI distribution client (auth, retries, mounts, uploads)
- :mod:`.credentials` registry credentials from ~/.docker/config.json
- :mod:`.sources`     which SavedModel a build puts in the image
- :mod:`.pydeps`      the dependency and cellship layers of ``--kind python`` (cached)
- :mod:`.builder`     the append builder itself
- :mod:`.archive`     OCI archives for ``podman load``

Importing this package is cheap (no TensorFlow); ``requests`` is imported with it.
"""

from __future__ import annotations

from cellship.images.builder import KINDS, BuildResult, LayerResult, build, default_kind
from cellship.images.errors import (
           BadReference,
           BuildError,
           ImageError,
           ImageNotFound,
           RegistryAuthError,
           RegistryError,
           RegistryUnreachable,
)
from cellship.images.reference import Reference, parse
from cellship.images.registry import Registry, RetryPolicy

__all__ = ["build", "BuildResult", "LayerResult", "KINDS", "default_kind", "parse",
           "Reference", "Registry", "RetryPolicy", "ImageError", "BadReference", "BuildError",
           "ImageNotFound", "RegistryAuthError", "RegistryError", "RegistryUnreachable"]
