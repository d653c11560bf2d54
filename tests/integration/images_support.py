"""Real registries, base images and podman for the image tests (and the image benchmark).

Nothing can be pulled from a public registry here, so base images are made locally: a
busybox image from Debian's busybox-static (under a second) for most tests, and a Debian
bookworm Python image from ``debootstrap`` (1-2 minutes, cached as an OCI layout under
``<cache>/test-bases/``) for the test that runs the built image with podman. Bases are
pushed with skopeo, i.e. by a different client than the one under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from cellship.images import layers
from cellship.images.cache import cache_dir

TOOLS = {"docker-registry": "docker-registry", "skopeo": "skopeo", "podman": "podman",
         "runc": "runc", "buildah": "buildah", "busybox": "busybox-static",
         "htpasswd": "apache2-utils", "debootstrap": "debootstrap"}
BOOKWORM = "http://deb.debian.org/debian"


def missing_tools(*names: str) -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"  # runc, debootstrap live there
    return [f"{n} (Debian package {TOOLS.get(n, n)})" for n in names
            if shutil.which(n, path=path) is None]


def podman_unusable() -> str | None:
    """Why the podman tests cannot run here (None when they can): they run podman as root
    with private storage, as CI does; rootless podman needs subuid setup this suite skips."""
    missing = missing_tools("podman", "runc")
    if missing:
        return f"missing {', '.join(missing)}; `make system-deps` installs them"
    if os.geteuid() != 0:
        return "the podman tests run as root (rootless podman needs /etc/subuid set up)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- registries -------------------------------------------------------------------------------
@dataclass
class LocalRegistry:
    """A ``docker-registry serve`` process on 127.0.0.1 with storage in ``root``."""

    port: int
    root: Path
    process: subprocess.Popen = field(repr=False)
    log: Path
    bind: str = "127.0.0.1"

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_registry(root: Path, *, htpasswd: Path | None = None, token: dict | None = None,
                   bind: str = "127.0.0.1", storage: Path | None = None,
                   name: str = "registry") -> LocalRegistry:
    """Start a registry (optionally with htpasswd or token auth) and wait for /v2/.
    ``storage``: another registry's data directory, shared (registries are stateless
    over their storage, as replicas behind a load balancer are), served at ``bind``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = ["version: 0.1", "log:", "  level: info", "storage:", "  filesystem:",
             f"    rootdirectory: {storage or root / 'data'}", "  delete:", "    enabled: true",
             "http:", f"  addr: {bind}:{port}", "  secret: cellship-test-secret"]
    if htpasswd is not None:
        lines += ["auth:", "  htpasswd:", "    realm: cellship-test", f"    path: {htpasswd}"]
    if token is not None:
        lines += ["auth:", "  token:", f"    realm: {token['realm']}",
                  f"    service: {token['service']}", f"    issuer: {token['issuer']}",
                  f"    rootcertbundle: {token['cert']}"]
    config = root / f"{name}.yml"
    config.write_text("\n".join(lines) + "\n")
    log = root / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    registry = LocalRegistry(port, root, process, log, bind)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {registry.log_text()[-2000:]}")
        try:
            requests.get(f"http://{registry.host}/v2/", timeout=1)
            return registry
        except requests.RequestException:
            time.sleep(0.1)
    registry.stop()
    raise RuntimeError(f"docker-registry did not answer in 30 s: {registry.log_text()[-2000:]}")


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    line = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True,
                          check=True).stdout.strip()
    path.write_text(line + "\n")
    return path


# -- base images ------------------------------------------------------------------------------
def write_layout(rootfs: Path, layout: Path, *, config: dict, name: str = "base",
                 level: int = 6) -> dict:
    """An OCI image layout at ``layout`` with one layer made of ``rootfs`` (owners and modes
    kept). Returns the manifest."""
    if layout.exists():
        shutil.rmtree(layout)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        layer = layers.write_layer(layers.tree(rootfs, "/", preserve=True),
                                   Path(tmp) / "layer.tar.gz", level=level)
        shutil.move(str(layer.path), blobs / layer.digest.split(":")[1])
    full = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": config, "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"test base {name}"}]}
    config_bytes = json.dumps(full).encode()
    config_digest = _put(blobs, config_bytes)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": len(config_bytes)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": layer.digest, "size": layer.size}]}
    manifest_bytes = json.dumps(manifest).encode()
    manifest_digest = _put(blobs, manifest_bytes)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": len(manifest_bytes), "annotations": {"org.opencontainers.image.ref.name": name}}]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return manifest


def _put(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return "sha256:" + digest


def busybox_layout(layout: Path) -> Path:
    """A ~1 MB busybox image (sh, wget, httpd...) from Debian's busybox-static."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "etc", "tmp", "root", "usr/bin", "dev", "proc", "sys"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
        (root / "bin" / "busybox").chmod(0o755)
        applets = subprocess.run([root / "bin" / "busybox", "--list"], capture_output=True,
                                 text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        (root / "tmp").chmod(0o1777)
        write_layout(root, layout, name="busybox",
                     config={"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["sh"]})
    return layout


PYTHON_BASE_PACKAGES = ("python3",)


def python_layout() -> Path:
    """A Debian bookworm image with python3 (debootstrap --variant=minbase), made once per
    machine and kept in the cache (the inputs carry no date, so the key is stable)."""
    key = hashlib.sha256(json.dumps({"suite": "bookworm", "variant": "minbase",
                                     "include": PYTHON_BASE_PACKAGES, "format": 1}).encode())
    layout = cache_dir("test-bases") / f"python-bookworm-{key.hexdigest()[:12]}"
    if (layout / "index.json").exists():
        return layout
    if os.geteuid() != 0 or shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is None:
        raise RuntimeError("making the Python base image needs debootstrap, run as root")
    with tempfile.TemporaryDirectory(prefix="cellship-debootstrap-") as tmp:
        root = Path(tmp) / "rootfs"
        done = subprocess.run([shutil.which("debootstrap", path="/usr/sbin:/usr/bin"),
                               "--variant=minbase",
                               f"--include={','.join(PYTHON_BASE_PACKAGES)}", "bookworm",
                               str(root), BOOKWORM], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "dev"):
            shutil.rmtree(root / junk, ignore_errors=True)
        (root / "dev").mkdir()
        partial = layout.with_name(layout.name + ".partial")
        write_layout(root, partial, name="python", config={
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG=C.UTF-8"], "Cmd": ["python3"]})
        if layout.exists():
            shutil.rmtree(layout)
        partial.rename(layout)
    return layout


def skopeo_push(layout: Path, dest: str, *, fmt: str = "v2s2", name: str | None = None) -> None:
    """Copy an OCI layout into a plain-http registry (``fmt``: v2s2 or oci)."""
    index = json.loads((layout / "index.json").read_text())
    name = name or index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", fmt,
                    f"oci:{layout}:{name}", f"docker://{dest}"], check=True,
                   capture_output=True, text=True)


def skopeo_inspect(ref: str, *, raw: bool = False, config: bool = False,
                   creds: str | None = None) -> dict:
    cmd = ["skopeo", "inspect", "--tls-verify=false"]
    if raw:
        cmd.append("--raw")
    if config:
        cmd.append("--config")
    if creds:
        cmd += ["--creds", creds]
    done = subprocess.run(cmd + [ref], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"skopeo inspect {ref} failed: {done.stderr}")
    return json.loads(done.stdout)


def model_dir(path: Path, *, megabytes: float = 1.0, seed: int = 0) -> Path:
    """A SavedModel-shaped directory (not a real model): saved_model.pb and a variables
    file of ``megabytes`` pseudo-random bytes (weights do not compress)."""
    import random

    rng = random.Random(seed)
    (path / "variables").mkdir(parents=True, exist_ok=True)
    (path / "saved_model.pb").write_bytes(b"fake saved model %d\n" % seed)
    size = int(megabytes * 1e6)
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(rng.randbytes(size))
    (path / "variables" / "variables.index").write_bytes(b"index %d\n" % seed)
    return path


# -- podman -----------------------------------------------------------------------------------
PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""


def short_runroot(base: Path) -> Path:
    """A short run root for ``base``: conmon's attach socket lives under it, and with a
    path as long as pytest's tmp dirs every ``podman run`` waits 20 s for it to time out."""
    return Path(tempfile.gettempdir()) / f"cs-run-{hashlib.sha1(str(base).encode()).hexdigest()[:10]}"


def podman_env(base: Path) -> dict[str, str]:
    """Environment for podman with private config and storage under ``base`` (kept between
    runs, so the ~2 GB TensorFlow layer is unpacked once per machine, not per run)."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "containers.conf").write_text(PODMAN_CONF)
    (base / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{base / "graph"}"\n'
        f'runroot = "{short_runroot(base)}"\n')
    (base / "registries.conf").write_text("unqualified-search-registries = []\n")
    env = dict(os.environ)
    env.update(CONTAINERS_CONF=str(base / "containers.conf"),
               CONTAINERS_STORAGE_CONF=str(base / "storage.conf"),
               CONTAINERS_REGISTRIES_CONF=str(base / "registries.conf"))
    return env


def podman(env: dict, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# -- a token service (the Bearer challenge flow of Docker Hub, GHCR, Harbor...) ---------------
class TokenServer:
    """A minimal Docker token service: checks Basic credentials, grants the asked scopes in
    an RS256 JWT signed by a self-signed certificate (made with openssl) that the registry
    trusts (``auth.token.rootcertbundle``)."""

    def __init__(self, root: Path, user: str, password: str) -> None:
        import http.server
        import threading

        root.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = root / "token.key", root / "token.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(self.key), "-out", str(self.cert), "-subj", "/CN=cellship-token",
                        "-days", "2"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.user, self.password = user, password
        self.service, self.issuer = "cellship-test-registry", "cellship-test-issuer"
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                given = self.headers.get("Authorization", "")
                ok = given == "Basic " + basic_auth(server.user, server.password)
                server.requests.append({"scopes": query.get("scope", []), "authorized": ok})
                if not ok:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"details":"bad credentials"}')
                    return
                token = server.token(query.get("scope", []))
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def registry_config(self) -> dict:
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "cert": str(self.cert)}

    def token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": self.user, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing.encode(), check=True,
                                   capture_output=True).stdout
        return f"{signing}.{_b64url(signature)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
