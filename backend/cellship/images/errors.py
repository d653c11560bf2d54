"""Errors of image building and registry access.

Each one says what went wrong and how to fix it, and names the registry involved: a user
pushing to two registries must know which one refused.
"""

from __future__ import annotations

from cellship.errors import CellshipError, UsageError


class ImageError(CellshipError):
    """Base of the errors of :mod:`cellship.images`."""


class BadReference(ImageError, UsageError):
    """An image reference does not parse."""


class RegistryError(ImageError):
    """A registry answered a request with an error the builder cannot work around."""

    def __init__(self, message: str, registry: str, status: int | None = None) -> None:
        super().__init__(message)
        self.registry = registry
        self.status = status


class RegistryUnreachable(RegistryError):
    """The registry did not answer (connection refused, DNS, TLS, timeouts, 5xx) even after
    the retries."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials (401) or has none for us."""


class ImageNotFound(RegistryError):
    """The registry has no such repository, tag or digest."""


class BuildError(ImageError):
    """The inputs of a build are wrong (model missing, unsupported base image...)."""
