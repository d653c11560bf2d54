"""CI definitions that run the same ``cellship release`` command: GitHub Actions, GitLab CI
and a declarative Jenkinsfile, each with build, test and deploy (release) stages.

- :mod:`.command`  the release command line, quoted for a shell, and the secrets' names
- :mod:`.github`   ``.github/workflows/release-MODEL.yml``
- :mod:`.gitlab`   ``.gitlab-ci.yml``
- :mod:`.jenkins`  ``Jenkinsfile``

Credentials are never written into the file: each generator reads every named secret from
its CI's own secret store (``${{ secrets.NAME }}``, a masked CI/CD variable, Jenkins'
``credentials('id')``) into an environment variable of the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cellship.errors import UsageError
from cellship.release.cigen import github, gitlab, jenkins
from cellship.release.cigen.command import ReleaseCommand

GENERATORS: dict[str, tuple[Callable[[ReleaseCommand], str], Callable[[ReleaseCommand], str]]] = {
    "github": (github.render, github.default_path),
    "gitlab": (gitlab.render, gitlab.default_path),
    "jenkins": (jenkins.render, jenkins.default_path),
}


def generate(ci: str, command: ReleaseCommand) -> str:
    if ci not in GENERATORS:
        raise UsageError(f"Unknown CI {ci!r}: use --ci github, gitlab or jenkins.")
    return GENERATORS[ci][0](command)


def write(ci: str, command: ReleaseCommand, output: str | Path | None = None) -> Path:
    """Write the definition to ``output`` (default: where that CI looks for it)."""
    text = generate(ci, command)
    path = Path(output) if output else Path(GENERATORS[ci][1](command))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


__all__ = ["ReleaseCommand", "generate", "write", "GENERATORS"]
