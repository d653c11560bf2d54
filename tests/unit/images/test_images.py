"""Unit tests of cellship.images: references, reproducible layers, credentials, challenges,
platform picking, config edits and model resolution. No registry, no network."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from cellship.images import BadReference, BuildError, layers, parse
from cellship.images.builder import BaseImage, new_config, new_manifest, pick_platform
from cellship.images.credentials import load_credentials
from cellship.images.registry import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Manifest,
    RetryPolicy,
    parse_challenge,
    sha256_bytes,
)
from cellship.images.sources import resolve_model


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("tensorflow/serving:2.14.1", "docker.io", "tensorflow/serving", "2.14.1", None),
    ("docker.io/tensorflow/serving", "docker.io", "tensorflow/serving", "latest", None),
    ("index.docker.io/library/python:3.11", "docker.io", "library/python", "3.11", None),
    ("127.0.0.1:5000/team/digits:v1", "127.0.0.1:5000", "team/digits", "v1", None),
    ("localhost/a/b", "localhost", "a/b", "latest", None),
    ("registry.example.com/x@sha256:" + "a" * 64, "registry.example.com", "x", None,
     "sha256:" + "a" * 64),
    ("[::1]:5000/x:y", "[::1]:5000", "x", "y", None),
    ("ghcr.io/org/app:v1.2_3-rc", "ghcr.io", "org/app", "v1.2_3-rc", None),
])
def test_reference_parses_with_docker_defaults(text, registry, repository, tag, digest):
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_reference_host_and_locality():
    assert parse("busybox").host == "registry-1.docker.io"
    assert parse("127.0.0.1:5000/a").is_local and parse("localhost:1/a").is_local
    assert parse("[::1]:5000/a").is_local
    assert not parse("example.com:5000/a").is_local
    assert str(parse("127.0.0.1:5000/a:b")) == "127.0.0.1:5000/a:b"


@pytest.mark.parametrize("bad", ["", "team/Digits", "a//b", "http://host/x", "x:-tag",
                                 "a@sha256:short", "repo:" + "t" * 200, "host:5000/"])
def test_bad_reference_names_a_valid_example(bad):
    with pytest.raises(BadReference) as err:
        parse(bad)
    assert "is not a valid image reference" in str(err.value)
    assert "127.0.0.1:5000/team/digits:v1" in str(err.value)


def _files(tmp: Path) -> Path:
    src = tmp / "model"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"pb")
    (src / "variables" / "data").write_bytes(bytes(range(256)) * 10000)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o750)
    (src / "link").symlink_to("saved_model.pb")
    return src


def test_layer_is_reproducible_and_normalised(tmp_path: Path):
    src = _files(tmp_path)
    one = layers.write_layer(layers.tree(src, "/models/m/1"), tmp_path / "a.tar.gz")
    # other mtimes, other thread count: the same bytes
    import os
    for path in src.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (12345, 12345))
    two = layers.write_layer(layers.tree(src, "/models/m/1"), tmp_path / "b.tar.gz", threads=1)
    assert (one.digest, one.diff_id, one.size) == (two.digest, two.diff_id, two.size)
    raw = (tmp_path / "a.tar.gz").read_bytes()
    assert one.digest == sha256_bytes(raw) and one.size == len(raw)
    plain = gzip.decompress(raw)
    assert one.diff_id == sha256_bytes(plain) and one.uncompressed_size == len(plain)
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0, and no file name flag
    assert raw[3] == 0
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["models", "models/m", "models/m/1", "models/m/1/link",
                     "models/m/1/run.sh", "models/m/1/saved_model.pb",
                     "models/m/1/variables", "models/m/1/variables/data"]
    by = {m.name: m for m in members}
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == ""
               for m in members)
    assert by["models/m/1/run.sh"].mode == 0o755 and by["models/m/1/saved_model.pb"].mode == 0o644
    assert by["models"].isdir() and by["models"].mode == 0o755
    assert by["models/m/1/link"].issym() and by["models/m/1/link"].linkname == "saved_model.pb"


def test_layer_changes_when_content_changes(tmp_path: Path):
    src = _files(tmp_path)
    one = layers.write_layer(layers.tree(src, "/m"), tmp_path / "a.tar.gz")
    (src / "saved_model.pb").write_bytes(b"pc")
    two = layers.write_layer(layers.tree(src, "/m"), tmp_path / "b.tar.gz")
    assert one.digest != two.digest and one.diff_id != two.diff_id


def test_parallel_gzip_is_valid_gzip_whatever_the_chunking(tmp_path: Path):
    data = (b"cellship " * 50000) + bytes(range(256)) * 3000
    outputs = set()
    for threads in (1, 3):
        buf = io.BytesIO()
        gz = layers.ParallelGzip(buf, threads=threads, chunk=65536)
        for i in range(0, len(data), 7000):
            gz.write(data[i:i + 7000])
        gz.close()
        assert gzip.decompress(buf.getvalue()) == data
        assert gz.sha.hexdigest() == hashlib.sha256(data).hexdigest()
        outputs.add(buf.getvalue())
    assert len(outputs) == 1


def test_image_path_refuses_escapes():
    with pytest.raises(BuildError):
        layers.image_path("/models/../../etc")
    assert layers.image_path("/models/./a/") == "models/a"


def test_credentials_from_docker_config(tmp_path: Path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {
        "127.0.0.1:5000": {"auth": base64.b64encode(b"alice:pa:ss").decode()},
        "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
        "http://reg.example.com/v2/": {"auth": base64.b64encode(b"carol:x").decode()}}}))
    creds = load_credentials("127.0.0.1:5000", config)
    assert (creds.username, creds.password) == ("alice", "pa:ss")
    assert "config.json" in creds.source and "pa:ss" not in repr(creds)
    assert load_credentials("docker.io", config).username == "bob"
    assert load_credentials("reg.example.com", config).username == "carol"
    assert load_credentials("other:1", config) is None
    assert load_credentials("x", tmp_path / "missing.json") is None


def test_docker_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {"r.io": {"auth": base64.b64encode(b"u:p").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert load_credentials("r.io").username == "u"


def test_parse_challenge():
    scheme, params = parse_challenge('Bearer realm="https://auth.docker.io/token",'
                                     'service="registry.docker.io",'
                                     'scope="repository:library/busybox:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull,push"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert parse_challenge("") == ("", {})


def test_retry_delays_back_off():
    assert list(RetryPolicy(attempts=5, backoff=0.5, max_backoff=3).delays()) == [0.5, 1, 2, 3]


def test_pick_platform():
    index = {"manifests": [
        {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}]}
    assert pick_platform(index, "linux/amd64", "x") == "sha256:amd"
    assert pick_platform(index, "linux/arm64/v8", "x") == "sha256:arm"
    with pytest.raises(BuildError, match="linux/amd64, linux/arm64/v8"):
        pick_platform(index, "linux/s390x", "x")


def _base(media_type: str) -> BaseImage:
    config = {"architecture": "amd64", "os": "linux", "created": "2024-05-01T00:00:00Z",
              "config": {"Env": ["PATH=/bin", "MODEL_NAME=old"], "Entrypoint": ["/entry.sh"]},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:base"]},
              "history": [{"created_by": "base"}]}
    manifest = {"schemaVersion": 2, "mediaType": media_type,
                "config": {"digest": "sha256:c", "size": 1},
                "layers": [{"mediaType": "x", "digest": "sha256:b", "size": 3}]}
    body = json.dumps(manifest).encode()
    return BaseImage(parse("127.0.0.1:5000/tensorflow/serving:1"),
                     Manifest(media_type, sha256_bytes(body), body, manifest), config)


def _layer() -> layers.Layer:
    return layers.Layer(Path("x"), "sha256:new", "sha256:newdiff", 10, 20, "cellship build: model")


def test_config_for_tf_serving_keeps_entrypoint_and_sets_model_name(tmp_path: Path):
    from cellship.images.sources import ModelSource

    src = ModelSource("digits", 3, tmp_path)
    config = new_config(_base(DOCKER_MANIFEST), [_layer()], "tf-serving", src)
    assert config["rootfs"]["diff_ids"] == ["sha256:base", "sha256:newdiff"]
    assert config["config"]["Env"] == ["PATH=/bin", "MODEL_NAME=digits"]
    assert config["config"]["Entrypoint"] == ["/entry.sh"]
    assert config["created"] == "2024-05-01T00:00:00Z"
    layered = [h for h in config["history"] if not h.get("empty_layer")]
    assert len(layered) == len(config["rootfs"]["diff_ids"])


def test_config_for_python_sets_cmd_and_pythonpath(tmp_path: Path, monkeypatch):
    from cellship.images.sources import ModelSource

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    config = new_config(_base(OCI_MANIFEST), [_layer()], "python", ModelSource("d", 1, tmp_path))
    run = config["config"]
    assert run["Entrypoint"] is None
    assert run["Cmd"][:4] == ["python3", "-m", "cellship.cli", "serve"]
    assert "/models/d" in run["Cmd"] and "8501/tcp" in run["ExposedPorts"]
    assert "PYTHONPATH=/opt/cellship/site-packages" in run["Env"]
    assert config["created"] == "1970-01-02T00:00:00Z"


def test_manifest_keeps_the_base_media_type():
    for media, layer_type in ((DOCKER_MANIFEST, layers.DOCKER_LAYER), (OCI_MANIFEST, layers.OCI_LAYER)):
        body, media_type = new_manifest(_base(media), [_layer()], b"{}")
        manifest = json.loads(body)
        assert media_type == media == manifest["mediaType"]
        assert manifest["layers"][-1] == {"mediaType": layer_type, "size": 10, "digest": "sha256:new"}
        assert manifest["config"]["digest"] == sha256_bytes(b"{}")


def test_resolve_model_paths_and_repository(tmp_path: Path, cellship_home: Path):
    from cellship.errors import ModelNotFound

    saved = tmp_path / "export" / "digits"
    saved.mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"x")
    assert resolve_model(saved).name == "digits" and resolve_model(saved).version == 1
    assert resolve_model(saved, name="d2", version=0).version == 0
    versions = tmp_path / "base" / "mnist"
    for v in (1, 7, 3):
        (versions / str(v)).mkdir(parents=True)
        (versions / str(v) / "saved_model.pb").write_bytes(b"x")
    assert resolve_model(versions).version == 7
    assert resolve_model(versions, version=3).path == versions / "3"
    assert (resolve_model(versions / "3").name, resolve_model(versions / "3").version) == ("mnist", 3)
    with pytest.raises(BuildError, match="no version 5"):
        resolve_model(versions, version=5)
    with pytest.raises(BuildError, match="--name"):
        resolve_model(versions, name="bad name")
    repo = cellship_home / "models" / "iris" / "2"
    repo.mkdir(parents=True)
    (repo / "saved_model.pb").write_bytes(b"x")
    found = resolve_model("iris")
    assert (found.name, found.version, found.path) == ("iris", 2, repo)
    with pytest.raises(ModelNotFound, match="iris"):
        resolve_model("nope")
    with pytest.raises(ModelNotFound, match="saved_model.pb"):
        resolve_model(tmp_path)


def test_cli_build_reports_bad_input_in_one_line(tmp_path: Path, capsys):
    from cellship.cli import main

    saved = tmp_path / "m"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"x")
    assert main(["build", str(saved), "--base", "no such/Ref", "--tag", "r.io/a:b"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellship: error: 'no such/Ref' is not a valid image reference")
    assert main(["build", str(saved), "--base", "busybox", "--tag", "r.io/a:b", "--no-push"]) == 1
    assert "--archive" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "missing"), "--base", "busybox", "--tag", "r.io/a:b"]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["build", str(saved), "--base", "busybox", "--tag", "r.io/a@sha256:" + "0" * 64]) == 1
    assert "names a digest" in capsys.readouterr().err


def test_plain_http_only_for_local_registries_or_when_asked():
    from cellship.images import Registry

    assert Registry("registry.example.com", credentials=None).base == "https://registry.example.com"
    assert Registry("docker.io", credentials=None).base == "https://registry-1.docker.io"
    assert Registry("127.0.0.1:5000", credentials=None).base == "http://127.0.0.1:5000"
    assert Registry("localhost:5000", credentials=None).scheme == "http"
    assert Registry("[::1]:5000", credentials=None).scheme == "http"
    assert Registry("10.0.0.5:5000", credentials=None).scheme == "https"
    assert Registry("10.0.0.5:5000", insecure=True, credentials=None).scheme == "http"


def test_5xx_is_retried_with_backoff_then_one_error():
    """A registry that keeps answering 503 is retried (3 attempts here), then reported once."""
    import http.server
    import threading

    from cellship.images import Registry, RegistryUnreachable

    hits: list[str] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(503 if len(hits) < 10 else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        client = Registry(host, credentials=None, retry=RetryPolicy(attempts=3, backoff=0.01))
        with pytest.raises(RegistryUnreachable) as err:
            client.manifest("a/b", "latest")
        assert len(hits) == 3
        assert f"cannot reach registry {host}" in str(err.value) and "503" in str(err.value)
    finally:
        server.shutdown()
        server.server_close()


# -- pydeps: pins, pip runs, --no-deps ----------------------------------------------------------
def test_pinned_pins_bare_names_to_installed_versions_and_dedupes():
    from importlib.metadata import version

    from cellship.images import pydeps

    got = pydeps.pinned(["pytest", "no-such-project-xyz", "tf_keras>=2", "Tf-Keras==2.0"])
    assert got == tuple(sorted([f"pytest=={version('pytest')}", "no-such-project-xyz",
                                "Tf-Keras==2.0"]))


def test_pip_commands_install_no_deps_requirements_in_a_second_run(tmp_path: Path):
    from cellship.images import pydeps

    site = tmp_path / "site"
    py = pydeps.host_python()
    (one,) = pydeps.pip_commands(["a==1"], py, site)
    assert one[-3:] == ["--target", str(site), "a==1"] and "--no-deps" not in one
    first, second = pydeps.pip_commands(["a==1", "b==2"], py, site, no_deps=["tf-keras==2.21.0"])
    assert first[-2:] == ["a==1", "b==2"] and "--no-deps" not in first
    assert second[-2:] == ["--no-deps", "tf-keras==2.21.0"] and str(site) in second
    other = pydeps.pip_commands(["a==1"], "3.99", site, no_deps=["c"])
    assert all("--only-binary=:all:" in cmd and "3.99" in cmd for cmd in other)


def test_deps_key_changes_with_no_deps_but_not_without_it():
    from cellship.images import pydeps

    reqs = ["tensorflow-cpu==2.21.0"]
    assert pydeps.deps_key(reqs, "3.11") == pydeps.deps_key(reqs, "3.11", ())
    assert pydeps.deps_key(reqs, "3.11", ["tf-keras==2.21.0"]) != pydeps.deps_key(reqs, "3.11")
    assert pydeps.deps_key(reqs, "3.11", ["x", "y"]) == pydeps.deps_key(reqs, "3.11", ["y", "x"])


def test_oci_archive_names_the_image_for_podman_and_containerd(tmp_path: Path):
    from cellship.images import archive

    layer = layers.write_layer([layers.Entry("hello.txt", data=b"hi\n")], tmp_path / "l.tar.gz")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}).encode()
    manifest = archive.oci_manifest([layer.descriptor(layers.OCI_LAYER)], config)
    out = archive.write_oci_archive(tmp_path / "img.tar", manifest, config,
                                    {layer.digest: layer.path}, "cellship.test/train:abc")
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        index = json.loads(tar.extractfile("index.json").read())
    assert {"oci-layout", "index.json", f"blobs/sha256/{layer.digest[7:]}",
            f"blobs/sha256/{sha256_bytes(config)[7:]}",
            f"blobs/sha256/{sha256_bytes(manifest)[7:]}"} <= names
    (entry,) = index["manifests"]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "cellship.test/train:abc",
                                    "io.containerd.image.name": "cellship.test/train:abc"}
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert not (tmp_path / "img.tar.partial").exists()
