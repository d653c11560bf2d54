"""s3:// URLs and where a store's keys come from (no store needed)."""

from __future__ import annotations

import base64

import pytest

from cellship.errors import UsageError
from cellship.storage import credentials as creds
from cellship.storage.errors import StorageError
from cellship.storage.url import S3Url, is_s3, parse
from tests.unit.kube_fake import FakeKube


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str = "s3-creds", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ml"},
            "data": {k: b64(v) for k, v in data.items()}}


def test_parse_normalises_and_builds_keys() -> None:
    url = parse("s3://my-bucket//runs/a/")
    assert url == S3Url("my-bucket", "runs/a") and str(url) == "s3://my-bucket/runs/a"
    assert url.key("digits/saved_model.pb") == "runs/a/digits/saved_model.pb"
    assert url.child("x").dir_prefix == "runs/a/x/" and url.name == "a"
    whole = parse("s3://bucket")
    assert whole.prefix == "" and whole.dir_prefix == "" and whole.key("/f") == "f"
    assert is_s3("s3://b/x") and not is_s3("/data") and not is_s3(None)


@pytest.mark.parametrize("text,words", [
    ("/data/runs", "must start with s3://"),
    ("s3://B/x", "is not a bucket name"),
    ("s3://ab/x", "is not a bucket name"),
    ("s3://bucket/a/../b", "may not hold"),
    ("s3://bucket/a b", "may not hold"),
])
def test_parse_refuses_with_the_rule(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as err:
        parse(text, "--k8s-output-dir")
    assert "e.g. s3://" in str(err.value)


def test_a_secret_gives_keys_endpoint_and_region_and_never_shows_the_secret_key() -> None:
    found = creds.from_secret(secret(AWS_ACCESS_KEY_ID="AK", AWS_SECRET_ACCESS_KEY="sekrit-xyz",
                                     AWS_ENDPOINT_URL="http://10.0.0.1:9000"), "s3-creds", "ml")
    assert (found.access_key, found.secret_key, found.endpoint, found.region) == (
        "AK", "sekrit-xyz", "http://10.0.0.1:9000", None)
    assert found.source == "the Secret s3-creds in namespace ml" and found.where.endswith(":9000")
    assert "sekrit-xyz" not in repr(found) and "sekrit-xyz" not in str(found)


def test_a_kserve_secret_names_its_endpoint_in_annotations() -> None:
    body = secret(AWS_ACCESS_KEY_ID="AK", AWS_SECRET_ACCESS_KEY="S")
    body["metadata"]["annotations"] = {creds.KSERVE_ENDPOINT: "minio.ml:9000",
                                       creds.KSERVE_HTTPS: "0", creds.KSERVE_REGION: "eu-1"}
    found = creds.from_secret(body, "s3-creds", "ml")
    assert (found.endpoint, found.region) == ("http://minio.ml:9000", "eu-1")


def test_a_secret_without_keys_names_itself_and_what_it_lacks() -> None:
    with pytest.raises(StorageError) as err:
        creds.from_secret(secret(AWS_ACCESS_KEY_ID="AK", token="x"), "s3-creds", "ml")
    text = str(err.value)
    assert "Secret s3-creds in namespace ml" in text and "AWS_SECRET_ACCESS_KEY" in text
    assert "it holds AWS_ACCESS_KEY_ID, token" in text and "kubectl create secret generic" in text


def test_reading_the_secret_through_the_api_missing_and_forbidden() -> None:
    kube = FakeKube()
    with pytest.raises(StorageError, match="Secret nope .*does not exist in namespace ml"):
        creds.read_secret(kube, "ml", "nope")
    kube.add(secret(AWS_ACCESS_KEY_ID="AK", AWS_SECRET_ACCESS_KEY="S"))
    assert creds.read_secret(kube, "ml", "s3-creds").access_key == "AK"
    kube.deny("get", "secrets")
    with pytest.raises(StorageError, match="may not read the Secret s3-creds"):
        creds.read_secret(kube, "ml", "s3-creds")


def test_the_pods_get_names_of_keys_never_values() -> None:
    env = creds.secret_env("s3-creds")
    assert [e["name"] for e in env] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                        "AWS_ENDPOINT_URL", "AWS_REGION"]
    assert all("value" not in e and e["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
               for e in env)
    assert [e["valueFrom"]["secretKeyRef"].get("optional", False) for e in env] == [
        False, False, True, True]


def test_the_users_own_aws_environment() -> None:
    found = creds.from_environment({"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "B",
                                    "AWS_ENDPOINT_URL_S3": "http://h:1", "AWS_DEFAULT_REGION": "r"})
    assert (found.access_key, found.endpoint, found.region) == ("A", "http://h:1", "r")
    assert "AWS environment" in found.source
