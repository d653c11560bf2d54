"""Job names -> Kubernetes object names and label values."""

from __future__ import annotations

import re

import pytest

from cellship.kube.errors import KubernetesInvalid
from cellship.kube.names import (
    check_namespace,
    dns_label,
    is_dns_label,
    job_prefix,
    label_value,
    replica_name,
)

RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("name, expected", [
    ("digits-cnn", "digits-cnn"),
    ("Digits_CNN.v2", "digits-cnn-v2"),
    ("__x__", "x"),
    ("9lives", "j-9lives"),
    ("...", "j"),
    ("a--b", "a-b"),
])
def test_dns_label_normalises(name: str, expected: str) -> None:
    assert dns_label(name) == expected
    assert RFC1035.match(dns_label(name))


def test_long_names_are_cut_with_a_hash_that_keeps_them_apart() -> None:
    a, b = "x" * 80 + "a", "x" * 80 + "b"
    assert len(dns_label(a)) == 63 and len(dns_label(b)) == 63
    assert dns_label(a) != dns_label(b)
    assert RFC1035.match(dns_label(a))


def test_prefix_leaves_room_for_the_replica_suffix() -> None:
    prefix = job_prefix("A" * 63, "ab12cd34")
    assert prefix.endswith("-ab12cd34")
    pod = replica_name(prefix, "worker", 9999)
    assert len(pod) <= 63 and is_dns_label(pod)


def test_replica_name_refuses_what_would_not_be_a_label() -> None:
    with pytest.raises(KubernetesInvalid, match="DNS label"):
        replica_name(job_prefix("A" * 63, "ab12cd34"), "worker", 123456)


@pytest.mark.parametrize("text, expected", [
    ("Digits_CNN.v2", "Digits_CNN.v2"),
    ("my job!", "my-job"),
    ("-x-", "x"),
])
def test_label_values(text: str, expected: str) -> None:
    assert label_value(text) == expected


def test_long_label_values_are_cut() -> None:
    value = label_value("y" * 100)
    assert len(value) <= 63 and value[-1].isalnum()


def test_namespace_is_refused_with_the_rule_not_normalised() -> None:
    assert check_namespace("ml-team") == "ml-team"
    with pytest.raises(KubernetesInvalid, match="DNS-1123 label.*e.g. ml-team"):
        check_namespace("ML_Team")


@pytest.mark.parametrize("options, what", [
    ({"image_pull_secrets": ["Reg_Cred"]}, "image_pull_secrets entry 'Reg_Cred'"),
    ({"service_account": "-sa"}, "service_account '-sa'"),
    ({"volumes": [{"claim": "Data", "mount_path": "/data"}]}, "PersistentVolumeClaim 'Data'"),
])
def test_user_object_names_are_checked_with_the_rule(options, what) -> None:
    from cellship.kube.options import KubernetesOptions

    with pytest.raises(KubernetesInvalid, match=f"{what}.*lower-case letters"):
        KubernetesOptions.from_dict(options)
