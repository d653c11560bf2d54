"""The one exception family of cellship.

Every error a user can cause or meet derives from :class:`CellshipError` and carries a
sentence that says what was wrong and how to fix it. IPython renders these through
``_render_traceback_`` (the hook ipyparallel uses for remote errors), so a notebook shows
the sentence instead of a traceback through cellship's own code.
"""

from __future__ import annotations


class CellshipError(Exception):
    """Base of every cellship error; ``str(err)`` is the full user-facing message."""

    def _render_traceback_(self) -> list[str]:
        """Let IPython show our message, not a traceback through our internals."""
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {line}" if i == 0 else line
                for i, line in enumerate(str(self).splitlines() or [""])]


class UsageError(CellshipError):
    """An option or argument given by the user is invalid."""


class ProgramError(CellshipError):
    """The cell, or the context it needs from earlier cells, cannot be shipped."""


class JobNotFound(CellshipError):
    """No job matches the id or name the user gave."""


class JobFailed(CellshipError):
    """A job the caller waited for ended in failure or was cancelled."""

    def __init__(self, message: str, job_id: str, status: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class BackendError(CellshipError):
    """A backend could not start, follow or stop a job."""


class MissingDependency(CellshipError):
    """An optional dependency is missing; the message names what to install."""


class StoreError(CellshipError):
    """The job store could not be opened or is damaged."""


class ModelNotFound(CellshipError):
    """No model in the model repository (or path on disk) matches what the user named."""


class ExportError(CellshipError):
    """A notebook or job could not be turned into a stored, servable model."""


class PathRefused(UsageError):
    """A file or log parameter names a path outside the directory it must stay in
    (``..``, an absolute path, a symlink out): refused rather than resolved."""


class ReleaseError(CellshipError):
    """A ``cellship release`` (or ``rollback``) stopped; the message names the step and why.
    ``step`` is the pipeline step that stopped it (run, gates, contract, stage, canary,
    promote), as the release record keeps it."""

    def __init__(self, message: str, step: str = "") -> None:
        super().__init__(message)
        self.step = step


class GateSyntaxError(UsageError):
    """A ``--gate`` expression is not of the accepted form."""


class GateFailed(ReleaseError):
    """One or more gates were not met; the message is the table of gate, value, threshold."""


class ContractBroken(ReleaseError):
    """The new version's serving signature differs from the one now served."""


class ReleaseBusy(ReleaseError):
    """Another release of the same model is running (its id and pid are named)."""
