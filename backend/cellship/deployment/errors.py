"""Errors of ``cellship deploy`` / ``undeploy``.

They are BackendErrors, so the CLI and notebooks show them like every other cluster failure:
one sentence of what went wrong and what to do, never a traceback.
"""

from __future__ import annotations

from cellship.errors import BackendError
from cellship.kube.diagnose import Diagnosis


class DeployError(BackendError):
    """A deployment could not be created, updated, reached or removed."""


class DeployFailed(DeployError):
    """The served model cannot start (image pull, crash loop, bad config...); waiting longer
    would not help. ``diagnosis`` is what the pods said, when they said something."""

    def __init__(self, message: str, diagnosis: Diagnosis | None = None) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis


class DeployTimeout(DeployError):
    """``--timeout`` passed before every replica was available (the rollout goes on)."""


class DeploymentNotFound(DeployError):
    """No cellship deployment has that name in that namespace."""
