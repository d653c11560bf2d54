"""Credentials never leak: a registry password and a kubeconfig's bearer token, planted
where users keep them (``$DOCKER_CONFIG/config.json``, ``$KUBECONFIG``), travel the real
paths (``cellship build`` pushing to an htpasswd registry, ``cellship deploy`` building then
talking to the API server, ``cellship train``/``batch``/``jobs`` on the kubernetes backend,
the dry run, the refusals), and then nothing cellship wrote or printed holds them: not
the captured CLI output (errors included), not a byte of CELLSHIP_HOME (the SQLite store
and its WAL, job dirs, logs, caches), not the pushed image (manifests, configs, every
layer decompressed), not the printed manifests.

The API server here is a stand-in on 127.0.0.1 that answers every request 401 as a real
one does for a bad token, and records what it was sent: the test first checks the token
really reached it, so a silent scan means the token went through cellship and stayed out.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration import images_support as sup
from tests.integration.test_batch import make_notebook

pytestmark = pytest.mark.images

_missing = sup.missing_tools("docker-registry", "skopeo", "htpasswd", "busybox")
if _missing:
    pytest.skip(f"missing {', '.join(_missing)}; `make system-deps` installs them",
                allow_module_level=True)

USER = "leaktest"
PASSWORD = f"regpw-{uuid.uuid4().hex}"
WRONG_PASSWORD = f"wrongpw-{uuid.uuid4().hex}"
TOKEN = f"kubetoken-{uuid.uuid4().hex}"
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def forms(secret: str, user: str = USER) -> list[bytes]:
    """How a secret can appear: as it is, URL-quoted, in Basic auth's base64 (alone and
    with the user) and in JSON-escaped text."""
    out = {secret, urllib.parse.quote(secret), json.dumps(secret)[1:-1]}
    for text in (secret, f"{user}:{secret}"):
        out.add(base64.b64encode(text.encode()).decode().rstrip("="))
    return [s.encode() for s in out]


NEEDLES = {name: forms(value) for name, value in (("registry password", PASSWORD),
                                                  ("wrong registry password", WRONG_PASSWORD),
                                                  ("kubernetes token", TOKEN))}


def _expanded(data: bytes) -> Iterator[bytes]:
    """The bytes and, for gzip or zlib data (image layers, caches), what they hold."""
    yield data
    for opener in (gzip.decompress, zlib.decompress):
        try:
            yield opener(data)
        except (OSError, zlib.error, EOFError):
            continue


def leaks_in(data: bytes, where: str) -> list[str]:
    return [f"{name} in {where}" for chunk in _expanded(data)
            for name, needles in NEEDLES.items() if any(n in chunk for n in needles)]


def leaks_under(root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(s == path or s in path.parents for s in skip):
            found += leaks_in(path.read_bytes(), str(path.relative_to(root)))
    return found


class FakeAPIServer:
    """Answers every request 401 (a revoked token, as the real server words it) and keeps
    each request's Authorization header and body (the objects cellship would create)."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.bodies: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.authorizations.append(self.headers.get("Authorization", ""))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    owner.bodies.append(self.rfile.read(length))
                body = json.dumps(UNAUTHORIZED).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """A registry with htpasswd auth holding a busybox base, a docker config and a
    kubeconfig with the planted secrets, an API server stand-in, an empty CELLSHIP_HOME."""
    root = tmp_path_factory.mktemp("leaks")
    registry = sup.start_registry(root / "registry", htpasswd=sup.htpasswd_file(
        root / "htpasswd", USER, PASSWORD))
    api = FakeAPIServer()
    try:
        busybox = sup.busybox_layout(root / "busybox-layout")
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                        f"{USER}:{PASSWORD}", f"oci:{busybox}:busybox",
                        f"docker://{registry.host}/base/busybox:1"], check=True,
                       capture_output=True)
        docker = root / "docker"
        docker.mkdir()
        (docker / "config.json").write_text(json.dumps(
            {"auths": {registry.host: {"auth": sup.basic_auth(USER, PASSWORD)}}}))
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "leak",
            "clusters": [{"name": "c", "cluster": {"server": api.url}}],
            "users": [{"name": "u", "user": {"token": TOKEN}}],
            "contexts": [{"name": "leak", "context": {"cluster": "c", "user": "u",
                                                      "namespace": "ml"}}]}))
        home = root / "cellship-home"
        env = os.environ | {"DOCKER_CONFIG": str(docker), "KUBECONFIG": str(kubeconfig),
                            "CELLSHIP_HOME": str(home), "CELLSHIP_K8S_CONTEXT": "leak"}
        yield {"root": root, "registry": registry, "api": api, "env": env, "home": home,
               "docker": docker, "model": sup.model_dir(root / "model" / "digits")}
    finally:
        api.stop()
        registry.stop()


def test_the_scan_finds_every_form_it_looks_for() -> None:
    """The scan can fail: each planted form is found, raw and inside a gzip layer."""
    for text in (PASSWORD, f"{USER}:{TOKEN}", sup.basic_auth(USER, PASSWORD)):
        assert leaks_in(b"x" + text.encode() + b"y", "here")
        assert leaks_in(gzip.compress(b"layer " + text.encode()), "a layer")
    assert leaks_in(json.dumps({"p": WRONG_PASSWORD}).encode(), "json")
    assert leaks_in(b"token%s" % urllib.parse.quote(TOKEN).encode(), "url")
    assert leaks_in(b"harmless text", "here") == []


def _cli(world: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellship.cli", *args], capture_output=True,
                          text=True, env=env or world["env"], cwd=world["root"], timeout=180)


def test_no_secret_in_outputs_store_layers_or_manifests(world) -> None:
    host, root = world["registry"].host, world["root"]
    script = root / "train.py"
    script.write_text("print('hello')\n")
    notebook = make_notebook(root / "nb.ipynb", "print(lr)", parameters="lr = 0.1")
    k8s = ["--backend", "kubernetes", "--image", f"{host}/team/leak:v1"]
    runs = {
        # The registry password at work: a python image (cellship's own layer too) pushed.
        "build": _cli(world, "build", str(world["model"]), "--base", f"{host}/base/busybox:1",
                      "--tag", f"{host}/team/leak:v1", "--kind", "python", "--retries", "1"),
        # Both at once: build and push, then the API server refuses the token.
        "deploy": _cli(world, "deploy", str(world["model"]), "--name", "leak",
                       "--base", f"{host}/base/busybox:1", "--tag", f"{host}/team/leak:v2",
                       "--image-pull-secret", "regcred", "--timeout", "5"),
        "dry run": _cli(world, "train", str(script), *k8s, "--dry-run"),
        "train": _cli(world, "train", str(script), *k8s, "--detach"),
        "batch": _cli(world, "batch", str(notebook), *k8s),
        "jobs": _cli(world, "jobs", "--backend", "kubernetes"),
        "deployments": _cli(world, "deployments"),
    }
    # A refused password is a secret too: its error names the user and the file, not it.
    wrong = root / "docker-wrong"
    wrong.mkdir(exist_ok=True)
    (wrong / "config.json").write_text(json.dumps(
        {"auths": {host: {"username": USER, "password": WRONG_PASSWORD}}}))
    runs["refused build"] = _cli(world, "build", str(world["model"]), "--base",
                                 f"{host}/base/busybox:1", "--tag", f"{host}/team/leak:v3",
                                 "--retries", "1", env=world["env"] | {"DOCKER_CONFIG": str(wrong)})

    outcome = {name: (done.returncode, done.stderr[-400:]) for name, done in runs.items()}
    assert runs["build"].returncode == 0 and runs["dry run"].returncode == 0, outcome
    assert "kind: Deployment" in runs["dry run"].stdout or "kind: Pod" in runs["dry run"].stdout
    for name in ("deploy", "train", "batch", "jobs", "deployments", "refused build"):
        assert runs[name].returncode != 0, (name, outcome[name])
    assert f"refused the credentials of user '{USER}'" in runs["refused build"].stderr
    # The token really went out, on every command that reached the API server.
    assert world["api"].authorizations and set(world["api"].authorizations) == {
        f"Bearer {TOKEN}"}, world["api"].authorizations[:3]

    # The objects sent to be created: the training job's ConfigMap (program, shim), a
    # batch run's Job.
    sent = b"\n".join(world["api"].bodies)
    assert b'"kind": "ConfigMap"' in sent or b'"kind":"ConfigMap"' in sent, sent[:300]
    found = leaks_in(sent, "objects sent to the API server")
    for name, done in runs.items():
        found += leaks_in(done.stdout.encode(), f"{name} stdout")
        found += leaks_in(done.stderr.encode(), f"{name} stderr")
    assert list(world["home"].rglob("*.db")), "the job store was written"
    found += leaks_under(world["home"])
    # The registry's storage: every manifest, config and (decompressed) layer pushed.
    blobs = world["registry"].root / "data"
    assert len(list(blobs.rglob("data"))) >= 5, "the pushed images' blobs"
    found += leaks_under(blobs)
    # And whatever else the commands left in their working directory (not the planted files).
    found += leaks_under(root, skip=(world["home"], world["registry"].root, world["docker"],
                                     wrong, root / "kubeconfig", root / "htpasswd"))
    assert found == []


# -- object storage keys -----------------------------------------------------------------------
class SecretAPIServer:
    """An API server stand-in that holds one Secret (an object store's keys) and accepts
    every create (echoed back with a uid), recording what it was sent; other reads are 404
    or empty lists."""

    def __init__(self, secret: dict) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urllib.parse.urlparse(self.path).path
                owner.paths.append(f"GET {path}")
                name = secret["metadata"]["name"]
                if path == f"/api/v1/namespaces/ml/secrets/{name}":
                    return self._send(200, secret)
                last = path.rstrip("/").rsplit("/", 1)[-1]
                if last in ("pods", "configmaps", "services", "events", "jobs"):
                    return self._send(200, {"kind": "List", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": "1"}, "items": []})
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "not found", "reason": "NotFound", "code": 404})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                owner.bodies.append(raw)
                owner.paths.append(f"POST {self.path}")
                body = json.loads(raw or b"{}")
                body.setdefault("metadata", {})["uid"] = uuid.uuid4().hex
                self._send(201, body)

            do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_no_object_store_key_leaves_the_secret_or_the_users_environment(tmp_path: Path) -> None:
    """An s3:// job: the Secret's keys reach the store (submit's access check writes its
    probe) but no manifest, ConfigMap, output or job store; the user's own AWS keys in the
    environment and ~/.aws are never copied anywhere either."""
    from tests import s3_server

    server = s3_server.start(tmp_path / "s3")
    user_secret = f"user-aws-{uuid.uuid4().hex}"
    try:
        server.bucket("leaks")
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "s3-creds", "namespace": "ml"},
                  "data": {k: base64.b64encode(v.encode()).decode() for k, v in server.env().items()}}
        api = SecretAPIServer(secret)
        try:
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "s3",
                "clusters": [{"name": "c", "cluster": {"server": api.url}}],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
                "contexts": [{"name": "s3", "context": {"cluster": "c", "user": "u",
                                                        "namespace": "ml"}}]}))
            aws = tmp_path / "aws"
            aws.mkdir()
            (aws / "credentials").write_text(f"[default]\naws_access_key_id = AKUSER\n"
                                             f"aws_secret_access_key = {user_secret}\n")
            home = tmp_path / "cellship-home"
            env = os.environ | {"KUBECONFIG": str(kubeconfig), "CELLSHIP_HOME": str(home),
                                "CELLSHIP_K8S_CONTEXT": "s3", "AWS_SECRET_ACCESS_KEY": user_secret,
                                "AWS_ACCESS_KEY_ID": "AKUSER",
                                "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials")}
            script = tmp_path / "train.py"
            script.write_text("print('hello')\n")
            flags = ["--backend", "kubernetes", "--image", "tf:test", "--k8s-output-dir",
                     "s3://leaks/run", "--storage-secret", "s3-creds"]
            world = {"env": env, "root": tmp_path}
            runs = {"dry run": _cli(world, "train", str(script), *flags, "--dry-run"),
                    "train": _cli(world, "train", str(script), *flags, "--detach")}
        finally:
            api.stop()
        outcome = {name: (done.returncode, done.stderr[-600:]) for name, done in runs.items()}
        assert all(done.returncode == 0 for done in runs.values()), outcome
        assert "secretKeyRef" in runs["dry run"].stdout
        assert any(p.startswith("POST") and p.endswith("/pods") for p in api.paths), api.paths
        # The access check read the Secret (through the kubeconfig) and used its keys on the
        # store: a wrong key would have stopped the submit before any pod was posted.
        assert "GET /api/v1/namespaces/ml/secrets/s3-creds" in api.paths, api.paths
        sent = b"\n".join(api.bodies)
        assert b"secretKeyRef" in sent and b"s3-creds" in sent
        needles = {"the Secret's secret key": server.secret_key, "the user's AWS key": user_secret}
        found = []
        for what, value in needles.items():
            forms_of = forms(value)
            for where, data in [("objects sent to the API server", sent),
                                *[(f"{n} stdout", d.stdout.encode()) for n, d in runs.items()],
                                *[(f"{n} stderr", d.stderr.encode()) for n, d in runs.items()]]:
                if any(f in data for f in forms_of):
                    found.append(f"{what} in {where}")
            for path in sorted(home.rglob("*")):
                if path.is_file() and any(f in path.read_bytes() for f in forms_of):
                    found.append(f"{what} in {path.relative_to(home)}")
        assert list(home.rglob("*.db")), "the job store was written"
        assert found == []
    finally:
        server.stop()
