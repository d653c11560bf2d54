"""Image references: ``[registry[:port]/]repository[:tag][@digest]``.

The grammar and the defaults are Docker's (distribution/reference), so that a reference
means here what it means to ``docker pull``, podman and skopeo: no registry means Docker Hub
(``docker.io``), a one-part Hub name gets ``library/``, and no tag and no digest means
``latest``. The first part is a registry only when it looks like a host: it has a ``.`` or a
``:``, or is ``localhost`` (``team/app`` is a Hub repository, ``team.io/app`` is not).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cellship.images.errors import BadReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
EXAMPLE = "127.0.0.1:5000/team/digits:v1 (or tensorflow/serving:2.14.1 on Docker Hub)"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. ``registry`` is as written (``docker.io`` for the Hub);
    ``host`` is where its API lives."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def host(self) -> str:
        """host[:port] of the registry's HTTP API (the Hub's API is not at docker.io)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def is_local(self) -> bool:
        """Whether the registry is on this machine (plain http is allowed there)."""
        return is_local_host(self.registry)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_local_host(registry: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1, with or without a port."""
    host = registry
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse(text: str) -> Reference:
    """Parse ``text`` with Docker's defaults; :class:`BadReference` (which names a valid
    example) when it does not parse."""
    original = text
    if not isinstance(text, str) or not text.strip():
        _fail(original, "it is empty")
    text = text.strip()
    if "://" in text:
        _fail(original, "leave out the scheme (http://, https://); write host:port/repository")
    name, digest = text, None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            _fail(original, f"{digest!r} is not a digest (algorithm:hex, e.g. sha256:<64 hex digits>)")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a colon after the last slash separates the tag
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.fullmatch(tag):
            _fail(original, f"{tag!r} is not a valid tag (letters, digits, _ . -; at most 128, "
                            "not starting with . or -)")
    parts = name.split("/")
    if len(parts) > 1 and _looks_like_registry(parts[0]):
        registry, path = parts[0], parts[1:]
        if not _DOMAIN.fullmatch(registry):
            _fail(original, f"{registry!r} is not a valid registry host[:port]")
    else:
        registry, path = DOCKER_HUB, parts
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if not path or any(not p for p in path):
        _fail(original, "the repository name is missing or has an empty part")
    for part in path:
        if not _COMPONENT.fullmatch(part):
            why = ("repository names must be lowercase" if part.lower() != part
                   else f"{part!r} is not a valid repository name part (lowercase letters, "
                        "digits and single . _ __ - between them)")
            _fail(original, why)
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    repository = "/".join(path)
    if len(repository) > _MAX_NAME:
        _fail(original, f"the repository name is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def _looks_like_registry(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost" or part.lower() != part


def _fail(text: object, why: str) -> None:
    raise BadReference(f"{text!r} is not a valid image reference: {why}. A valid one looks "
                       f"like {EXAMPLE}.")
