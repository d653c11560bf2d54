"""Registry credentials, found where ``docker login`` and ``podman login --authfile
~/.docker/config.json`` put them.

Read from ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``):
``auths[<registry>]`` with a base64 ``auth`` ("user:password") or ``username``/``password``,
else a credential helper (``credHelpers[<registry>]`` or ``credsStore``), run as
``docker-credential-<name> get`` exactly as docker runs it. Keys of ``auths`` may carry a
scheme and a path (``https://index.docker.io/v1/``); they are matched on host[:port].
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cellship.images.errors import RegistryAuthError
from cellship.images.reference import DOCKER_HUB

_HUB_ALIASES = {DOCKER_HUB, "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Credentials:
    """A user and secret for one registry, and where they came from (for messages)."""

    username: str
    password: str = field(repr=False)
    source: str = ""


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base).expanduser() if base else Path.home() / ".docker") / "config.json"


def _host(key: str) -> str:
    key = key.strip()
    if "://" in key:
        key = urlsplit(key).netloc
    key = key.split("/", 1)[0]
    return DOCKER_HUB if key in _HUB_ALIASES else key


def load_credentials(registry: str, config: Path | None = None) -> Credentials | None:
    """Credentials for ``registry`` (host[:port] as written in the reference), or None."""
    path = config or docker_config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise RegistryAuthError(f"cannot read registry credentials from {path}: {err}. Fix "
                                "or remove the file (docker login writes it).",
                                registry) from err
    want = _host(registry)
    for key, entry in (data.get("auths") or {}).items():
        if _host(key) != want or not isinstance(entry, dict):
            continue
        creds = _from_entry(entry, f"{path} (auths[{key!r}])", registry)
        if creds is not None:
            return creds
    helpers = data.get("credHelpers") or {}
    helper = next((h for k, h in helpers.items() if _host(k) == want), None) or data.get("credsStore")
    if helper:
        return _from_helper(helper, registry, path)
    return None


def _from_entry(entry: dict, source: str, registry: str) -> Credentials | None:
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as err:
            raise RegistryAuthError(f"the 'auth' value for {registry} in {source} is not "
                                    "base64 of user:password; run docker login again",
                                    registry) from err
        return Credentials(user, password, source)
    if entry.get("username") and entry.get("password") is not None:
        return Credentials(entry["username"], entry["password"], source)
    return None


def _from_helper(helper: str, registry: str, config: Path) -> Credentials | None:
    program = f"docker-credential-{helper}"
    if shutil.which(program) is None:
        return None  # docker would fail too; anonymous access may still work
    server = "https://index.docker.io/v1/" if _host(registry) == DOCKER_HUB else registry
    try:
        done = subprocess.run([program, "get"], input=server, capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RegistryAuthError(f"credential helper {program} (from {config}) failed for "
                                f"{registry}: {err}", registry) from err
    if done.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        return None
    if not answer.get("Username"):
        return None
    return Credentials(answer["Username"], answer.get("Secret", ""), f"{program} (from {config})")
