"""``cellship build`` against real registries (Debian's docker-registry on 127.0.0.1, plain,
htpasswd and token-authenticated), checked with real clients (skopeo, podman).

Base images are made locally (nothing can be pulled here): busybox for most tests, a
debootstrapped Debian Python for the test that runs the built image with podman and asks it
for predictions. Registries start once per module and are stopped at its end.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import requests

from cellship.images import (
    BadReference,
    BuildError,
    ImageNotFound,
    RegistryAuthError,
    RegistryUnreachable,
    RetryPolicy,
    build,
)
from cellship.images.registry import DOCKER_INDEX, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Registry
from tests.integration import images_support as sup

pytestmark = pytest.mark.images

_missing = sup.missing_tools("docker-registry", "skopeo", "htpasswd", "openssl", "busybox")
if _missing:
    pytest.skip(f"missing {', '.join(_missing)}; `make system-deps` installs them",
                allow_module_level=True)

FAST = RetryPolicy(attempts=3, backoff=0.05)


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellship.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def registry(workdir: Path):
    reg = sup.start_registry(workdir / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def busybox(workdir: Path) -> Path:
    return sup.busybox_layout(workdir / "busybox-layout")


@pytest.fixture(scope="module")
def serving_base(registry, busybox) -> str:
    """A busybox image under a tensorflow/serving name (Docker v2 manifest): the default
    kind for it is tf-serving."""
    ref = f"{registry.host}/tensorflow/serving:busybox"
    sup.skopeo_push(busybox, ref, fmt="v2s2")
    return ref


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return sup.model_dir(tmp_path / "digits", megabytes=2)


@pytest.fixture()
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write ~/.docker/config.json (through DOCKER_CONFIG) for a test."""
    folder = tmp_path / "docker"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))

    def write(auths: dict) -> Path:
        (folder / "config.json").write_text(json.dumps({"auths": auths}))
        return folder / "config.json"

    write({})
    return write


def _layer_files(ref: str, digest: str, tmp: Path) -> dict[str, bytes]:
    """The files of one layer of a pushed image, fetched with skopeo."""
    out = tmp / f"dir-{uuid.uuid4().hex[:6]}"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                    f"dir:{out}"], check=True, capture_output=True)
    data = gzip.decompress((out / digest.split(":")[1]).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"")
                for m in tar.getmembers()}


# -- pushing, checked with skopeo ---------------------------------------------------------------
def test_tf_serving_image_is_pushed_and_skopeo_sees_it(registry, serving_base, model, tmp_path):
    tag = f"{registry.host}/team/digits:v1"
    base = sup.skopeo_inspect(f"docker://{serving_base}")
    result = build(model, base=serving_base, tag=tag, name="digits")
    assert result.kind == "tf-serving" and result.pushed
    assert result.media_type == DOCKER_MANIFEST

    seen = sup.skopeo_inspect(f"docker://{tag}")
    assert seen["Digest"] == result.digest
    assert seen["Layers"] == base["Layers"] + [result.layers[0].digest]
    assert "MODEL_NAME=digits" in seen["Env"]
    assert seen["Labels"]["io.cellship.model"] == "digits"
    raw = sup.skopeo_inspect(f"docker://{tag}", raw=True)
    assert raw["mediaType"] == DOCKER_MANIFEST
    config = sup.skopeo_inspect(f"docker://{tag}", config=True)
    assert config["rootfs"]["diff_ids"][-1] == result.layers[0].diff_id

    files = _layer_files(tag, result.layers[0].digest, tmp_path)
    assert files["models/digits/1/saved_model.pb"] == (model / "saved_model.pb").read_bytes()
    assert files["models/digits/1/variables/variables.data-00000-of-00001"] == \
        (model / "variables" / "variables.data-00000-of-00001").read_bytes()

    # the base layer was mounted from the base repository, not uploaded
    assert result.mounted_blobs == tuple(base["Layers"])
    assert result.uploaded_bytes < result.layers[0].size + 10_000
    log = registry.log_text()
    assert "POST /v2/team/digits/blobs/uploads/?from=tensorflow%2Fserving&mount=" in log or \
        "mount=" in log


def test_same_inputs_same_digest_and_an_unchanged_rebuild_uploads_nothing(registry, serving_base,
                                                                         model):
    tag = f"{registry.host}/team/repro:v1"
    first = build(model, base=serving_base, tag=tag, name="repro")
    assert first.uploaded_bytes > 0
    again = _cli("build", str(model), "--base", serving_base, "--tag", tag, "--name", "repro",
                 "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["digest"] == first.digest
    assert second["uploaded_bytes"] == 0
    assert [l["status"] for l in second["layers"]] == ["present"]
    assert second["mounted_blobs"] == []

    # the same inputs pushed elsewhere give the same digest too
    other = build(model, base=serving_base, tag=f"{registry.host}/elsewhere/repro:x", name="repro")
    assert other.digest == first.digest


def test_model_change_uploads_only_the_new_model_layer(registry, serving_base, model):
    tag = f"{registry.host}/team/change:v1"
    first = build(model, base=serving_base, tag=tag, name="change")
    (model / "variables" / "variables.index").write_bytes(b"changed")
    second = build(model, base=serving_base, tag=tag, name="change")
    assert second.digest != first.digest
    assert second.layers[0].status == "uploaded"
    assert second.mounted_blobs == ()  # the base blobs are already in the repository
    # the model layer, the config and the manifest; nothing of the base
    assert second.layers[0].size < second.uploaded_bytes < second.layers[0].size + 10_000
    assert sup.skopeo_inspect(f"docker://{tag}")["Digest"] == second.digest


def test_layer_index_skips_compressing_unchanged_content(registry, serving_base, tmp_path):
    """Content built before on this machine is recalled (digest known, nothing compressed);
    a registry that lacks it gets the same bytes, made again."""
    big = sup.model_dir(tmp_path / "big", megabytes=20, seed=uuid.uuid4().int)  # new content
    tag = f"{registry.host}/team/big:v1"
    first = build(big, base=serving_base, tag=tag, name="big")
    assert first.layers[0].status == "uploaded"
    assert first.uploaded_bytes >= first.layers[0].size
    messages: list[str] = []
    again = build(big, base=serving_base, tag=tag, name="big", progress=messages.append)
    assert (again.digest, again.uploaded_bytes, again.layers[0].status) == \
        (first.digest, 0, "present")
    assert any("model layer" in m and "built before" in m for m in messages), messages
    other = build(big, base=serving_base, tag=f"{registry.host}/team/big2:v1", name="big")
    assert other.digest == first.digest and other.layers[0].status == "uploaded"
    files = _layer_files(f"{registry.host}/team/big2:v1", first.layers[0].digest, tmp_path)
    assert files["models/big/1/variables/variables.data-00000-of-00001"] == \
        (big / "variables" / "variables.data-00000-of-00001").read_bytes()


def test_oci_base_and_index_keep_oci_types(registry, busybox, model):
    """An OCI base gives an OCI manifest; an index base resolves to its linux/amd64 entry."""
    sup.skopeo_push(busybox, f"{registry.host}/base/oci:1", fmt="oci")
    client = Registry(registry.host)
    child = client.manifest("base/oci", "1")
    assert child.media_type == OCI_MANIFEST
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child.digest, "size": len(child.body),
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": OCI_MANIFEST, "digest": child.digest, "size": len(child.body),
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    client.put_manifest("base/oci", "multi", json.dumps(index).encode(), OCI_INDEX)

    result = build(model, base=f"{registry.host}/base/oci:multi", kind="tf-serving",
                   tag=f"{registry.host}/team/oci:v1", name="digits")
    assert result.media_type == OCI_MANIFEST
    raw = sup.skopeo_inspect(f"docker://{registry.host}/team/oci:v1", raw=True)
    assert raw["mediaType"] == OCI_MANIFEST
    assert raw["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert raw["annotations"]["org.opencontainers.image.base.digest"] == child.digest
    assert sup.skopeo_inspect(f"docker://{registry.host}/team/oci:v1")["Digest"] == result.digest


def test_docker_manifest_list_base(registry, serving_base, model):
    client = Registry(registry.host)
    child = client.manifest("tensorflow/serving", "busybox")
    assert child.media_type == DOCKER_MANIFEST
    index = {"schemaVersion": 2, "mediaType": DOCKER_INDEX, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": child.digest, "size": len(child.body),
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    client.put_manifest("tensorflow/serving", "list", json.dumps(index).encode(), DOCKER_INDEX)
    result = build(model, base=f"{registry.host}/tensorflow/serving:list", name="digits",
                   tag=f"{registry.host}/team/fromlist:v1")
    assert result.media_type == DOCKER_MANIFEST and result.kind == "tf-serving"
    with pytest.raises(BuildError, match="no image for linux/arm64"):
        build(model, base=f"{registry.host}/tensorflow/serving:list", platform="linux/arm64",
              tag=f"{registry.host}/team/fromlist:v2")


def test_base_on_another_registry_is_copied(registry, serving_base, model, workdir):
    other = sup.start_registry(workdir / "registry-b")
    try:
        result = build(model, base=serving_base, tag=f"{other.host}/team/digits:v1", name="digits")
        base_layers = sup.skopeo_inspect(f"docker://{serving_base}")["Layers"]
        assert result.copied_blobs == tuple(base_layers)
        seen = sup.skopeo_inspect(f"docker://{other.host}/team/digits:v1")
        assert seen["Digest"] == result.digest
    finally:
        other.stop()


# -- archives ---------------------------------------------------------------------------------
def test_oci_archive_loads_with_skopeo_and_podman(registry, serving_base, model, tmp_path):
    archive = tmp_path / "digits.tar"
    done = _cli("build", str(model), "--base", serving_base, "--tag", "localhost/cellship/digits:v1",
                "--name", "digits", "--archive", str(archive), "--no-push")
    assert done.returncode == 0, done.stderr
    seen = sup.skopeo_inspect(f"oci-archive:{archive}")
    assert "MODEL_NAME=digits" in seen["Env"] and len(seen["Layers"]) == 2
    if sup.podman_unusable():
        pytest.skip(sup.podman_unusable())
    env = sup.podman_env(tmp_path / "podman")
    try:
        loaded = sup.podman(env, "load", "-i", str(archive))
        assert "localhost/cellship/digits:v1" in loaded.stdout + loaded.stderr
        ran = sup.podman(env, "run", "--rm", "localhost/cellship/digits:v1", "sh", "-c",
                         "echo $MODEL_NAME; cat /models/digits/1/saved_model.pb")
        assert ran.stdout.splitlines() == ["digits", "fake saved model 0"]
    finally:
        sup.podman(env, "system", "reset", "--force", check=False)
        shutil.rmtree(sup.short_runroot(tmp_path / "podman"), ignore_errors=True)


# -- bad input --------------------------------------------------------------------------------
def test_bad_reference_says_what_a_valid_one_looks_like(model):
    done = _cli("build", str(model), "--base", "Not A/Ref", "--tag", "127.0.0.1:1/x:y")
    assert done.returncode == 1
    assert "not a valid image reference" in done.stderr
    assert "127.0.0.1:5000/team/digits:v1" in done.stderr
    with pytest.raises(BadReference):
        build(model, base="busybox", tag="team/Digits:v1")


def test_missing_base_image_is_named(registry, model):
    with pytest.raises(ImageNotFound, match=f"registry {registry.host} has no nothing/here:1"):
        build(model, base=f"{registry.host}/nothing/here:1", tag=f"{registry.host}/x:y",
              kind="tf-serving")


def test_unreachable_registry_retries_then_fails_once(model):
    port = sup.free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(RegistryUnreachable) as err:
        build(model, base=f"127.0.0.1:{port}/base:1", tag=f"127.0.0.1:{port}/x:y", retry=FAST)
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert f"cannot reach registry 127.0.0.1:{port}" in message
    assert "tried 3 times" in message and "refused" in message.lower()
    assert 0.15 <= elapsed < 10
    done = _cli("build", str(model), "--base", f"127.0.0.1:{port}/base:1", "--tag",
                f"127.0.0.1:{port}/x:y", "--retries", "2")
    assert done.returncode == 1
    errors = [l for l in done.stderr.splitlines() if "error" in l]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], done.stderr


# -- authentication ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def basic_registry(workdir: Path, busybox: Path):
    reg = sup.start_registry(workdir / "basic", htpasswd=sup.htpasswd_file(
        workdir / "htpasswd", "alice", "right-password"))
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                    "alice:right-password", f"oci:{busybox}:busybox",
                    f"docker://{reg.host}/base/busybox:1"], check=True, capture_output=True)
    yield reg
    reg.stop()


def test_basic_auth_with_docker_config_and_401_names_the_registry(basic_registry, model,
                                                                   docker_config):
    host = basic_registry.host
    config = docker_config({host: {"auth": sup.basic_auth("alice", "right-password")}})
    result = build(model, base=f"{host}/base/busybox:1", tag=f"{host}/team/digits:v1",
                   kind="tf-serving", name="digits")
    seen = sup.skopeo_inspect(f"docker://{host}/team/digits:v1", creds="alice:right-password")
    assert seen["Digest"] == result.digest and result.mounted_blobs

    docker_config({f"http://{host}": {"username": "alice", "password": "wrong"}})
    done = _cli("build", str(model), "--base", f"{host}/base/busybox:1",
                "--tag", f"{host}/team/digits:v2", "--kind", "tf-serving", "--retries", "1")
    assert done.returncode == 1
    assert f"registry {host} refused the credentials of user 'alice'" in done.stderr
    assert "401" in done.stderr and str(config) in done.stderr

    docker_config({})
    with pytest.raises(RegistryAuthError, match=f"registry {host} requires a login"):
        build(model, base=f"{host}/base/busybox:1", tag=f"{host}/team/digits:v3",
              kind="tf-serving", retry=FAST)


def test_bearer_token_flow(workdir, busybox, model, docker_config):
    tokens = sup.TokenServer(workdir / "token", "bob", "token-password")
    reg = sup.start_registry(workdir / "token-registry", token=tokens.registry_config())
    try:
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                        "bob:token-password", f"oci:{busybox}:busybox",
                        f"docker://{reg.host}/base/busybox:1"], check=True, capture_output=True)
        docker_config({reg.host: {"auth": sup.basic_auth("bob", "token-password")}})
        result = build(model, base=f"{reg.host}/base/busybox:1", tag=f"{reg.host}/team/d:v1",
                       kind="tf-serving", name="d")
        assert result.mounted_blobs  # the token covered pull on the base repository too
        scopes = [set(r["scopes"]) for r in tokens.requests if r["authorized"]]
        assert {"repository:base/busybox:pull", "repository:team/d:pull,push"} in scopes
        seen = sup.skopeo_inspect(f"docker://{reg.host}/team/d:v1", creds="bob:token-password")
        assert seen["Digest"] == result.digest

        docker_config({reg.host: {"auth": sup.basic_auth("bob", "nope")}})
        with pytest.raises(RegistryAuthError) as err:
            build(model, base=f"{reg.host}/base/busybox:1", tag=f"{reg.host}/team/d:v2",
                  kind="tf-serving", retry=FAST)
        assert f"registry {reg.host} refused the credentials of user 'bob'" in str(err.value)
    finally:
        reg.stop()
        tokens.stop()


# -- the python kind ----------------------------------------------------------------------------
def test_python_kind_adds_cellship_and_the_command(registry, busybox, model, tmp_path):
    """Config and layers of the python kind (without the TensorFlow layer: --deps-from-base)."""
    base = f"{registry.host}/base/pyish:1"
    sup.skopeo_push(busybox, base, fmt="v2s2")
    tag = f"{registry.host}/team/py:v1"
    result = build(model, base=base, tag=tag, kind="python", name="digits", deps_from_base=True)
    assert len(result.layers) == 2
    config = sup.skopeo_inspect(f"docker://{tag}", config=True)["config"]
    assert config["Cmd"] == ["python3", "-m", "cellship.cli", "serve", "/models/digits",
                             "--host", "0.0.0.0", "--port", "8501"]
    assert "PYTHONPATH=/opt/cellship/site-packages" in config["Env"]
    assert "MODEL_NAME=digits" in config["Env"] and "8501/tcp" in config["ExposedPorts"]
    files = _layer_files(tag, result.layers[0].digest, tmp_path)
    site = "opt/cellship/site-packages"
    assert f"{site}/cellship/cli/main.py" in files and f"{site}/cellship/images/builder.py" in files
    assert not any("__pycache__" in name for name in files)
    assert b"Name: cellship" in files[f"{site}/cellship-{__import__('cellship').__version__}.dist-info/METADATA"]


# -- the python kind, run with podman -----------------------------------------------------------
MAKE_MODEL = textwrap.dedent("""
    import sys
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.Variable([[2.0], [-1.0]])
            self.b = tf.Variable([0.5])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.w) + self.b}

    module = Affine()
    tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.__call__})
""")


@pytest.mark.timeout(1500)
def test_python_image_runs_in_podman_and_answers_predict(registry, tmp_path):
    if sup.podman_unusable() or sup.missing_tools("debootstrap"):
        pytest.skip(sup.podman_unusable() or "debootstrap missing; `make system-deps` installs it")
    saved = tmp_path / "affine" / "1"
    subprocess.run([sys.executable, "-c", MAKE_MODEL, str(saved)], check=True,
                   capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    base = f"{registry.host}/base/python:bookworm"
    sup.skopeo_push(sup.python_layout(), base, fmt="v2s2")
    tag = f"{registry.host}/team/affine:v1"
    result = build(saved.parent, base=base, tag=tag, kind="python")
    assert [l.created_by.split(":")[1].split()[0] for l in result.layers] == \
        ["pip", "cellship", "model"]
    seen = sup.skopeo_inspect(f"docker://{tag}")
    assert seen["Digest"] == result.digest

    from cellship.images.cache import cache_dir

    env = sup.podman_env(cache_dir("test-podman"))
    local = "localhost/cellship-test/affine:latest"
    sup.podman(env, "pull", "-q", "--tls-verify=false", tag, timeout=900)
    sup.podman(env, "tag", tag, local)
    sup.podman(env, "untag", local, tag, check=False)  # the port changes every run
    port = sup.free_port()
    name = f"cellship-test-{uuid.uuid4().hex[:8]}"
    sup.podman(env, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8501", local)
    try:
        url = f"http://127.0.0.1:{port}/v1/models/affine"
        deadline = time.monotonic() + 240
        while True:
            try:  # ready when the model is loaded: the status URL answers 200 while LOADING
                if requests.get(f"{url}/metadata", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            state = sup.podman(env, "inspect", "-f", "{{.State.Running}}", name, check=False)
            if state.stdout.strip() != "true" or time.monotonic() > deadline:
                logs = sup.podman(env, "logs", name, check=False)
                pytest.fail(f"the container did not serve: {logs.stdout[-3000:]}"
                            f"{logs.stderr[-3000:]}")
            time.sleep(1)
        answer = requests.post(f"{url}:predict", json={"instances": [[1.0, 2.0], [3.0, 1.0]]},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [[0.5], [5.5]]
    finally:
        sup.podman(env, "rm", "-f", "-t", "0", name, check=False)
        sup.podman(env, "image", "prune", "-f", check=False)
