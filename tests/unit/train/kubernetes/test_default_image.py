"""Which image a cluster job runs in: names, the refusal of official Keras-3-only images,
and the sentences when something is missing (no registry, no cluster needed)."""

from __future__ import annotations

from importlib import metadata

import pytest

from cellship.errors import UsageError
from cellship.kube.options import KubernetesOptions
from cellship.train.kubernetes import default_image as di

LEGACY = {"TF_USE_LEGACY_KERAS": "1"}


def test_the_kernels_tensorflow_version_is_read_without_importing_it() -> None:
    assert di.kernel_tf_version() == metadata.version("tensorflow-cpu")


@pytest.mark.parametrize("version, gpus, image", [
    ("2.21.0", 0, "tensorflow/tensorflow:2.21.0"),
    ("2.21.0", 1, "tensorflow/tensorflow:2.21.0-gpu"),
    ("2.21.0rc1", 0, "tensorflow/tensorflow:2.21.0"),
])
def test_the_official_image_matches_the_version_and_the_gpus(version, gpus, image) -> None:
    assert di.official_image(version, gpus, environ={}) == image


def test_a_mirror_of_the_official_images_is_used_and_still_known_as_official() -> None:
    env = {di.REPOSITORY_ENV: "mirror.example:5000/hub/tensorflow/tensorflow/"}
    assert di.official_image("2.21.0", 0, env) == "mirror.example:5000/hub/tensorflow/tensorflow:2.21.0"
    assert di.is_official("mirror.example:5000/hub/tensorflow/tensorflow:2.21.0", env)
    assert di.is_official("docker.io/tensorflow/tensorflow:2.21.0", env)
    assert not di.is_official("mirror.example:5000/team/train:1", env)


def test_a_nightly_without_a_release_number_has_no_official_image() -> None:
    with pytest.raises(UsageError, match="no official image"):
        di.official_image("nightly", 0, {})


@pytest.mark.parametrize("image", ["tensorflow/tensorflow:2.16.1", "tensorflow/tensorflow:2.21.0-gpu",
                                   "tensorflow/tensorflow", "docker.io/tensorflow/tensorflow:latest"])
def test_official_keras3_only_images_are_refused_with_both_fixes(image) -> None:
    with pytest.raises(UsageError) as caught:
        di.check_image(image, legacy_keras=True, environ={})
    text = str(caught.value)
    assert image in text and "tf-keras" in text and "--registry" in text
    assert "TF_USE_LEGACY_KERAS=0" in text


@pytest.mark.parametrize("image, legacy", [
    ("tensorflow/tensorflow:2.15.0", True),  # still has Keras 2 as tf.keras
    ("tensorflow/tensorflow:2.21.0", False),  # Keras 3 asked for
    ("registry.example/team/tf-with-keras:2.21.0", True),
])
def test_other_images_pass_the_check(image, legacy) -> None:
    di.check_image(image, legacy_keras=legacy, environ={})


def test_without_image_or_registry_the_sentence_says_what_to_give() -> None:
    with pytest.raises(UsageError) as caught:
        di.planned_image(KubernetesOptions(), 0, LEGACY)
    text = str(caught.value)
    assert "No --image given" in text and "--registry HOST[/PATH]" in text
    assert f"tensorflow/tensorflow:{di.kernel_tf_version()}" in text


def test_the_dry_run_names_the_default_image_without_building_it() -> None:
    planned = di.planned_image(KubernetesOptions(registry="reg.example:5000/ml/"), 1, LEGACY)
    version = di.kernel_tf_version()
    assert planned == (f"reg.example:5000/ml/cellship-tensorflow:<made at submit: "
                       f"tensorflow/tensorflow:{version}-gpu + tf-keras {version}>")


def test_keras3_jobs_run_the_official_image_itself(capsys) -> None:
    lines: list[str] = []
    image = di.choose_image(KubernetesOptions(), 0, {"TF_USE_LEGACY_KERAS": "0"}, say=lines.append)
    assert image == f"tensorflow/tensorflow:{di.kernel_tf_version()}"
    assert lines and image in lines[0]


def test_a_given_image_wins_and_nothing_is_printed() -> None:
    lines: list[str] = []
    options = KubernetesOptions(image="registry.example/team/train:1", registry="reg.example")
    assert di.choose_image(options, 0, LEGACY, say=lines.append) == "registry.example/team/train:1"
    assert lines == []
