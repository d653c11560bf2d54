"""The release command a CI job runs, and the secrets it needs from the CI's store."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from cellship.errors import UsageError

_SECRET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ReleaseCommand:
    """``argv``: the ``cellship release ...`` arguments (without ``--ci`` options);
    ``secrets``: names of the environment variables it reads, each filled from the CI's
    secret store under the same name; ``python``: the version the CI job installs."""

    model: str
    argv: tuple[str, ...]
    secrets: tuple[str, ...] = ()
    python: str = "3.11"
    install: str = "pip install 'cellship[tensorflow]'"

    def __post_init__(self) -> None:
        for name in self.secrets:
            if not _SECRET.match(name):
                raise UsageError(f"--ci-secret {name!r} is not an environment variable name: use "
                                 "letters, digits and '_', not starting with a digit.")

    @property
    def shell(self) -> str:
        """The command as one shell line, every argument quoted."""
        return shlex.join(["cellship", "release", *self.argv])
