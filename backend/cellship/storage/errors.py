"""The errors of object storage: each says which bucket, at which endpoint, with which
credentials, and what to change."""

from __future__ import annotations

from cellship.errors import BackendError


class StorageError(BackendError):
    """An object store refused or could not be reached; the message is the sentence."""
