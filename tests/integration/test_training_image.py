"""The default training image (cellship.images.training): a base plus a tf-keras layer,
pushed to a real registry (Debian's docker-registry on 127.0.0.1) once per base digest.

The base here is a busybox image (the official TensorFlow image cannot be pulled on this
machine); what is checked is what the builder adds: the tf-keras wheel's files under
cellship's site folder, PYTHONPATH with that folder first, the labels, the tag keyed by the
base's digest, and that a second job only finds the image (nothing pushed). The cluster
test (tests/k8s/test_default_image.py) trains in such an image.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from importlib import metadata
from pathlib import Path

import pytest

from cellship.images import pydeps
from cellship.images.registry import Registry
from cellship.images.training import LABEL_TF_KERAS, with_tf_keras
from tests.integration import images_support as sup

pytestmark = pytest.mark.images

_missing = sup.missing_tools("docker-registry", "skopeo", "busybox")
if _missing:
    pytest.skip(f"missing {', '.join(_missing)}; `make system-deps` installs them",
                allow_module_level=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    reg = sup.start_registry(tmp_path_factory.mktemp("training-image") / "registry")
    yield reg
    reg.stop()


def test_the_base_gets_tf_keras_once_per_base_digest(registry, tmp_path: Path) -> None:
    base = f"{registry.host}/mirror/tensorflow/tensorflow:2.21.0"
    sup.skopeo_push(sup.busybox_layout(tmp_path / "busybox"), base, fmt="oci")
    version = metadata.version("tf-keras")
    lines: list[str] = []
    made = with_tf_keras(base, f"{registry.host}/team", version, progress=lines.append)
    assert made.built and made.tag.startswith(f"{registry.host}/team/cellship-tensorflow:2.21.0-")
    assert made.ref.startswith(f"{registry.host}/team/cellship-tensorflow@sha256:")

    reg = Registry(registry.host)
    repository = "team/cellship-tensorflow"
    manifest = reg.manifest(repository, made.ref.rsplit("@", 1)[1]).data
    config = json.loads(reg.fetch_blob(repository, manifest["config"]["digest"]))
    env = dict(item.partition("=")[::2] for item in config["config"]["Env"])
    assert env["PYTHONPATH"].split(":")[0] == pydeps.SITE
    assert config["config"]["Labels"][LABEL_TF_KERAS] == version
    assert len(manifest["layers"]) == 2  # busybox, tf-keras
    layer = gzip.decompress(reg.fetch_blob(repository, manifest["layers"][-1]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        names = set(tar.getnames())
    site = pydeps.SITE.lstrip("/")
    assert f"{site}/tf_keras/__init__.py" in names
    assert f"{site}/tf_keras-{version}.dist-info/METADATA" in names
    assert not any("/tensorflow/" in n for n in names), "tf-keras came with dependencies"

    again = with_tf_keras(base, f"{registry.host}/team", version)
    assert (again.built, again.ref, again.tag) == (False, made.ref, made.tag)

    # Another base (digest) is another image: the tag is keyed by what it is made of.
    sup.skopeo_push(sup.busybox_layout(tmp_path / "busybox"), base, fmt="v2s2")
    other = with_tf_keras(base, f"{registry.host}/team", version)
    assert other.built and other.tag != made.tag


def test_a_registry_that_is_not_there_is_an_image_error() -> None:
    from cellship.images.errors import ImageError

    with pytest.raises(ImageError):
        with_tf_keras(f"127.0.0.1:{sup.free_port()}/tensorflow/tensorflow:2.21.0",
                      "127.0.0.1:1/team", "2.21.0")
