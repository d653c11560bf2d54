"""A small client of the OCI distribution API: just what an append builder needs.

Why hand-written rather than a library: ``oras`` declares the OCI manifest type for
everything and breaks Docker v2 bases (tensorflow/serving is one), Google's
containerregistry is not on PyPI, and ``python-dxf`` has no cross-repository mount and its
own auth handling. The protocol subset is small: ping, manifests (GET/HEAD/PUT), blobs
(HEAD/GET), mount (POST ?mount=&from=) and the monolithic upload (POST then PUT ?digest=).

Transport rules, each learnt the hard way by docker and podman:
- https by default; plain http only for a registry on this machine (localhost, 127/8, ::1)
  or when the caller says ``insecure``. A TLS error is not retried (it will not heal) and
  says how to reach a plain-http registry.
- Connection errors, timeouts and 5xx are retried with exponential backoff, then raise ONE
  :class:`RegistryUnreachable` naming the registry, the attempts and the last cause.
- 401 starts the challenge flow of WWW-Authenticate: Basic sends the user's credentials,
  Bearer fetches a token from the realm for the scopes the request needs (all repositories
  this client was told about, so a mount from another repository is authorised too).
  Credentials that are refused raise :class:`RegistryAuthError` naming the registry and the
  place the credentials came from.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import requests.adapters

from cellship.images.credentials import Credentials, docker_config_path, load_credentials
from cellship.images.errors import ImageNotFound, RegistryAuthError, RegistryError, RegistryUnreachable
from cellship.images.reference import DOCKER_HUB, DOCKER_HUB_API, is_local_host

log = logging.getLogger("cellship.images")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_INDEX = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_INDEX, OCI_INDEX)
ACCEPT_ALL = ", ".join((OCI_INDEX, DOCKER_INDEX, OCI_MANIFEST, DOCKER_MANIFEST))

_T = TypeVar("_T")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before calling a registry unreachable: ``attempts`` tries, waiting
    ``backoff``, 2x, 4x... (at most ``max_backoff``) between them."""

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delays(self) -> Iterable[float]:
        for i in range(self.attempts - 1):
            yield min(self.backoff * 2 ** i, self.max_backoff)


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry sent it: the exact bytes (whose sha256 is the
    digest), the media type and the parsed JSON."""

    media_type: str
    digest: str
    body: bytes = field(repr=False)
    data: dict = field(repr=False, compare=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


class _BigBlocks(requests.adapters.HTTPAdapter):
    """Send request bodies (layer files) in 1 MiB writes instead of http.client's 8-16 KiB:
    a 50 MB upload to a local registry is ~20% faster."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = _BLOCK
        super().init_poolmanager(*args, **kwargs)


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, 5xx)."""


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """One registry (host[:port]); requests for any of its repositories."""

    def __init__(self, registry: str, *, insecure: bool = False,
                 credentials: Credentials | None | bool = True,
                 retry: RetryPolicy = RetryPolicy(), timeout: float = 300.0,
                 session: requests.Session | None = None) -> None:
        self.name = registry
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.scheme = "http" if insecure or is_local_host(registry) else "https"
        self.base = f"{self.scheme}://{host}"
        if credentials is True:
            credentials = load_credentials(registry)
        self.credentials: Credentials | None = credentials or None
        self.retry = retry
        self.timeout = (10.0, timeout)
        if session is None:
            session = requests.Session()
            for prefix in ("http://", "https://"):
                session.mount(prefix, _BigBlocks())
        self.session = session
        self.session.headers["User-Agent"] = "cellship-image-builder"
        self._auth: str | None = None
        self._scopes: dict[str, set[str]] = {}
        self._tokens: dict[frozenset, str] = {}

    # -- scopes ---------------------------------------------------------------------------
    def want(self, repository: str, *actions: str) -> None:
        """Declare that this client will use ``repository`` with ``actions`` (pull, push):
        a bearer token is then asked for all of them at once."""
        have = self._scopes.setdefault(repository, set())
        if not set(actions) <= have:
            have.update(actions)
            self._tokens.clear()

    # -- API --------------------------------------------------------------------------------
    def manifest(self, repository: str, reference: str) -> Manifest:
        self.want(repository, "pull")
        resp = self._call(lambda: self._send(
            "GET", f"/v2/{repository}/manifests/{reference}", repo=repository,
            headers={"Accept": ACCEPT_ALL}, ok=(200,), missing=f"{repository}:{reference}"))
        body = resp.content
        digest = sha256_bytes(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"registry {self.name} sent a manifest for {repository}@"
                                f"{reference} whose digest is {digest}; the registry or a "
                                "proxy in between altered it", self.name)
        try:
            data = json.loads(body)
        except ValueError as err:
            raise RegistryError(f"registry {self.name} sent a manifest for {repository}:"
                                f"{reference} that is not JSON", self.name) from err
        media = data.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
        if data.get("schemaVersion") == 1:
            raise RegistryError(f"{self.name}/{repository}:{reference} is a Docker schema 1 "
                                "image (deprecated since 2017), which cannot be appended to; "
                                "use a newer base image", self.name)
        return Manifest(media_type=media, digest=digest, body=body, data=data)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points to now, or None when there is no such tag (HEAD)."""
        self.want(repository, "pull")
        resp = self._call(lambda: self._send(
            "HEAD", f"/v2/{repository}/manifests/{reference}", repo=repository,
            headers={"Accept": ACCEPT_ALL}, ok=(200, 404)))
        if resp.status_code == 404:
            return None
        return resp.headers.get("Docker-Content-Digest")

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest; returns its digest after checking the registry computed the same."""
        self.want(repository, "pull", "push")
        digest = sha256_bytes(body)
        resp = self._call(lambda: self._send(
            "PUT", f"/v2/{repository}/manifests/{reference}", repo=repository,
            headers={"Content-Type": media_type}, data=body, ok=(200, 201)))
        answered = resp.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"registry {self.name} stored the manifest of {repository}:"
                                f"{reference} as {answered}, but its bytes hash to {digest}; "
                                "the registry rewrote it", self.name)
        return digest

    def blob_size(self, repository: str, digest: str) -> int | None:
        """Size of a blob the repository has, or None (HEAD)."""
        self.want(repository, "pull")
        resp = self._call(lambda: self._send(
            "HEAD", f"/v2/{repository}/blobs/{digest}", repo=repository, ok=(200, 404)))
        if resp.status_code == 404:
            return None
        return int(resp.headers.get("Content-Length", "0") or 0)

    def mount(self, repository: str, digest: str, source: str) -> bool:
        """Cross-repository mount: make ``source``'s blob part of ``repository`` without
        sending a byte. False when the registry declined (it then opened an upload, which
        is abandoned)."""
        self.want(repository, "pull", "push")
        self.want(source, "pull")
        query = urlencode({"mount": digest, "from": source})
        resp = self._call(lambda: self._send(
            "POST", f"/v2/{repository}/blobs/uploads/?{query}", repo=repository, ok=(201, 202)))
        if resp.status_code == 201:
            return True
        location = resp.headers.get("Location")
        if location:
            try:
                self._send("DELETE", location, repo=repository, ok=(200, 202, 204, 404, 405))
            except (_Transient, RegistryError):
                pass  # an abandoned upload expires on its own
        return False

    def upload(self, repository: str, digest: str, source: Path | bytes) -> int:
        """Monolithic upload (POST, then PUT ?digest= with the bytes); returns bytes sent."""
        self.want(repository, "pull", "push")
        size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        self._call(lambda: self._upload_once(repository, digest, source, size))
        return size

    def _upload_once(self, repository: str, digest: str, source: Path | bytes, size: int) -> None:
        resp = self._send("POST", f"/v2/{repository}/blobs/uploads/", repo=repository, ok=(202,))
        url = _add_query(_location(self, resp), digest=digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(source, bytes):
            self._send("PUT", url, repo=repository, headers=headers, data=source, ok=(201,))
        else:
            with open(source, "rb") as handle:
                self._send("PUT", url, repo=repository, headers=headers, data=handle, ok=(201,))

    def fetch_blob(self, repository: str, digest: str) -> bytes:
        """A small blob (a config) in memory, digest checked."""
        self.want(repository, "pull")
        resp = self._call(lambda: self._send(
            "GET", f"/v2/{repository}/blobs/{digest}", repo=repository, ok=(200,),
            missing=f"{repository}@{digest}"))
        if sha256_bytes(resp.content) != digest:
            raise RegistryError(f"registry {self.name} sent blob {digest} of {repository} "
                                "with other contents", self.name)
        return resp.content

    def download_blob(self, repository: str, digest: str, dest: Path) -> Path:
        """Stream a blob to ``dest`` (via a .partial file), digest checked."""
        self.want(repository, "pull")
        dest.parent.mkdir(parents=True, exist_ok=True)

        def once() -> Path:
            partial = dest.with_name(dest.name + ".partial")
            resp = self._send("GET", f"/v2/{repository}/blobs/{digest}", repo=repository,
                              ok=(200,), stream=True, missing=f"{repository}@{digest}")
            sha = hashlib.sha256()
            try:
                with open(partial, "wb") as out:
                    for block in resp.iter_content(_BLOCK):
                        sha.update(block)
                        out.write(block)
            except requests.RequestException as err:
                raise _Transient(f"download of {digest} broke off: {err}") from err
            finally:
                resp.close()
            if "sha256:" + sha.hexdigest() != digest:
                partial.unlink(missing_ok=True)
                raise RegistryError(f"registry {self.name} sent blob {digest} of {repository} "
                                    "with other contents", self.name)
            partial.replace(dest)
            return dest

        return self._call(once)

    # -- transport --------------------------------------------------------------------------
    def _call(self, attempt: Callable[[], _T]) -> _T:
        started = time.monotonic()
        delays = list(self.retry.delays())
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except _Transient as err:
                if not delays:
                    raise RegistryUnreachable(
                        f"cannot reach registry {self.name} ({self.base}): {err} (tried {tries} "
                        f"times over {time.monotonic() - started:.1f} s). Check that the "
                        "registry is running and that its host and port are right"
                        + ("" if self.scheme == "http" else "; a plain-http registry on "
                           "another machine needs --insecure") + ".", self.name) from err
                delay = delays.pop(0)
                log.info("registry %s: %s; retrying in %.1f s", self.name, err, delay)
                time.sleep(delay)

    def _send(self, method: str, path: str, *, repo: str | None = None, ok: tuple = (200,),
              headers: dict | None = None, data: Any = None, stream: bool = False,
              auth: bool = True, missing: str | None = None) -> requests.Response:
        url = path if "://" in path else self.base + path
        for round_ in range(3):
            sent = dict(headers or {})
            if auth and self._auth:
                sent["Authorization"] = self._auth
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                resp = self.session.request(method, url, headers=sent, data=data, stream=stream,
                                            timeout=self.timeout, allow_redirects=True)
            except requests.exceptions.SSLError as err:
                raise RegistryUnreachable(
                    f"TLS with registry {self.name} failed ({_cause(err)}). If it serves plain "
                    "http, pass --insecure (plain http is used without asking only for "
                    "localhost).", self.name) from err
            except requests.RequestException as err:
                raise _Transient(_cause(err)) from err
            status = resp.status_code
            if status in ok:
                return resp
            if status == 401 and auth and round_ < 2:
                resp.close()
                self._authenticate(resp, repo)
                continue
            if status >= 500 or status == 429:
                resp.close()
                raise _Transient(f"{method} {urlsplit(url).path} answered {status} {resp.reason}")
            self._fail(method, url, resp, missing)
        self._fail(method, url, resp, missing)
        raise AssertionError("unreachable")

    def _fail(self, method: str, url: str, resp: requests.Response, missing: str | None) -> None:
        status = resp.status_code
        detail = _error_detail(resp)
        where = urlsplit(url).path
        if status == 401:
            raise self._auth_error(detail)
        if status == 403:
            who = f"user {self.credentials.username!r}" if self.credentials else "anonymous access"
            raise RegistryAuthError(f"registry {self.name} denied {method} {where} for {who} "
                                    f"(403 Forbidden{': ' + detail if detail else ''}). Check that "
                                    "the account may push to this repository.", self.name, 403)
        if status == 404 and missing:
            raise ImageNotFound(f"registry {self.name} has no {missing} (404"
                                f"{': ' + detail if detail else ''}). Check the name and tag "
                                f"(skopeo inspect docker://{self.name}/{missing.split('@')[0]} "
                                "shows what is there).", self.name, 404)
        raise RegistryError(f"registry {self.name} answered {method} {where} with {status} "
                            f"{resp.reason}{': ' + detail if detail else ''}", self.name, status)

    def _auth_error(self, detail: str = "") -> RegistryAuthError:
        config = docker_config_path()
        if self.credentials is None:
            return RegistryAuthError(
                f"registry {self.name} requires a login (401 Unauthorized) and there are no "
                f"credentials for {self.name} in {config}. Log in with `docker login "
                f"{self.name}` or `podman login --authfile {config} {self.name}`.", self.name, 401)
        return RegistryAuthError(
            f"registry {self.name} refused the credentials of user {self.credentials.username!r} "
            f"from {self.credentials.source or 'the caller'} (401 Unauthorized"
            f"{': ' + detail if detail else ''}). Check the user and password, then log in "
            f"again with `docker login {self.name}`.", self.name, 401)

    def _authenticate(self, resp: requests.Response, repo: str | None) -> None:
        """Answer a 401 challenge: set ``self._auth`` or raise RegistryAuthError."""
        scheme, params = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self.credentials is None or (self._auth or "").startswith("Basic "):
                raise self._auth_error(_error_detail(resp))
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryAuthError(f"registry {self.name} asks for authentication scheme "
                                    f"{scheme or '(none)'!r}, which cellship does not speak "
                                    "(Basic and Bearer tokens are supported)", self.name, 401)
        scopes = {s for s in params.get("scope", "").split(" ") if s}
        scopes |= {f"repository:{r}:{','.join(sorted(a))}" for r, a in self._scopes.items()}
        key = frozenset(scopes)
        if key in self._tokens and self._auth == f"Bearer {self._tokens[key]}":
            raise self._auth_error(_error_detail(resp))  # a fresh token was refused
        token = self._tokens.get(key) or self._fetch_token(params, sorted(scopes))
        self._tokens[key] = token
        self._auth = f"Bearer {token}"

    def _fetch_token(self, params: dict[str, str], scopes: list[str]) -> str:
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", s) for s in scopes]
        creds = self.credentials
        auth = (creds.username, creds.password) if creds else None

        def once() -> requests.Response:
            try:
                answer = self.session.get(params["realm"], params=query, auth=auth,
                                          timeout=self.timeout)
            except requests.RequestException as err:
                raise _Transient(f"token service {params['realm']}: {_cause(err)}") from err
            if answer.status_code >= 500:
                raise _Transient(f"token service {params['realm']} answered {answer.status_code}")
            return answer

        answer = self._call(once)
        if answer.status_code in (401, 403):
            raise self._auth_error(f"token service {params['realm']} answered "
                                   f"{answer.status_code}")
        if answer.status_code != 200:
            raise RegistryError(f"the token service of registry {self.name} ({params['realm']}) "
                                f"answered {answer.status_code} {answer.reason}", self.name,
                                answer.status_code)
        try:
            body = answer.json()
        except ValueError as err:
            raise RegistryError(f"the token service of registry {self.name} sent no JSON",
                                self.name) from err
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"the token service of registry {self.name} sent no token",
                                self.name)
        return token


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="reg",scope="repository:a:pull"`` ->
    (``bearer``, {realm, service, scope})."""
    header = header.strip()
    if not header:
        return "", {}
    scheme, _, rest = header.partition(" ")
    params = {k.lower(): v.replace('\\"', '"') for k, v in
              re.findall(r'([A-Za-z_][\w-]*)\s*=\s*"((?:[^"\\]|\\.)*)"', rest)}
    for k, v in re.findall(r'([A-Za-z_][\w-]*)\s*=\s*([^",\s]+)', rest):
        params.setdefault(k.lower(), v)
    return scheme.lower(), params


def _location(registry: Registry, resp: requests.Response) -> str:
    """The absolute URL of an upload session from a response's Location header."""
    location = resp.headers.get("Location")
    if not location:
        raise RegistryError(f"registry {registry.name} answered an upload request without a "
                            "Location header", registry.name)
    return urljoin(registry.base + "/", location)


def _add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _error_detail(resp: requests.Response) -> str:
    """The registry's own error message ({"errors": [{"code", "message"}]}), if any."""
    try:
        errors = resp.json().get("errors") or []
    except (ValueError, AttributeError):
        return ""
    return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                     for e in errors if isinstance(e, dict))


def _cause(err: BaseException) -> str:
    """The innermost reason of a requests error ("Connection refused", "timed out")."""
    text = str(err)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    if isinstance(err, requests.Timeout):
        return "timed out"
    return text[:200]
