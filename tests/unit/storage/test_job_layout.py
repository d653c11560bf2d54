"""Where an s3:// job's folders go, what the pods are told, and the flags that say so."""

from __future__ import annotations

import argparse
import json

import pytest

from cellship.errors import UsageError
from cellship.kube import flags
from cellship.kube.errors import KubernetesInvalid
from cellship.kube.options import KubernetesOptions
from cellship.train.kubernetes import manifests as m
from cellship.train.kubernetes import storage
from cellship.train.spec import JobSpec

ID = m.JobIdentity("ab12cd34", "digits", "ml")


def opts(**kw) -> KubernetesOptions:
    return KubernetesOptions(image="registry.local/tf:2.21", **kw)


def owner() -> dict:
    cm = m.config_map(ID, "print('hi')\n")
    cm["metadata"]["uid"] = "uid-cm"
    return cm


def test_an_s3_output_dir_takes_the_logdir_and_backups_along() -> None:
    places = storage.places(opts(output_dir="s3://runs/team/a", storage_secret="s3-creds"))
    assert [(p.what, p.pod, str(p.url), p.live) for p in places] == [
        ("output", m.OUTPUT_DIR, "s3://runs/team/a", False),
        ("logdir", m.LOGDIR, "s3://runs/team/a/.cellship/tensorboard", True),
        ("backup", m.BACKUP_DIR, "s3://runs/team/a/.cellship/backup", False)]
    assert storage.manifest_key(opts(output_dir="s3://runs/team/a", storage_secret="x"),
                                "j1")[1] == "team/a/.cellship/jobs/j1.json"


def test_only_an_s3_logdir_leaves_output_and_backup_in_the_pod() -> None:
    options = opts(logdir="s3://runs/tb/a", output_dir="/data/out", storage_secret="s3-creds")
    places = storage.places(options)
    assert [(p.pod, p.url and str(p.url)) for p in places] == [
        ("/data/out", None), (m.LOGDIR, "s3://runs/tb/a"), (m.BACKUP_DIR, None)]
    plan = storage.upload_plan(options, "j1")
    assert plan["all"] is False and plan["roots"] == [
        {"local": m.LOGDIR, "bucket": "runs", "prefix": "tb/a", "live": True}]
    assert plan["manifest"] == {"bucket": "runs", "key": "tb/a/.cellship/jobs/j1.json"}


def test_only_the_keeper_gets_the_keys_and_only_as_secret_refs() -> None:
    options = opts(output_dir="s3://runs/a", storage_secret="s3-creds")
    pods = m.pods(ID, JobSpec(workers=2), options, owner())
    chief, other = pods
    program, keeper = chief["spec"]["containers"]
    assert keeper["name"] == m.KEEPER
    program_env = {e["name"]: e.get("value") for e in program["env"]}
    # The program writes locally; the keeper uploads.
    assert program_env["CELLSHIP_OUTPUT_DIR"] == m.OUTPUT_DIR
    assert program_env["CELLSHIP_LOGDIR"] == m.LOGDIR
    assert not any(k.startswith("AWS_") for k in program_env)
    assert not any(e["name"].startswith("AWS_") for e in other["spec"]["containers"][0]["env"])
    refs = [e for e in keeper["env"] if e["name"].startswith("AWS_")]
    assert [e["name"] for e in refs] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                         "AWS_ENDPOINT_URL", "AWS_REGION"]
    assert all(set(e) == {"name", "valueFrom"} for e in refs)
    plan = json.loads(next(e["value"] for e in keeper["env"] if e["name"] == "CELLSHIP_UPLOADS"))
    assert plan["all"] is True and plan["job_id"] == ID.job_id
    assert [r["prefix"] for r in plan["roots"]] == ["a", "a/.cellship/tensorboard",
                                                     "a/.cellship/backup"]
    # The uploader ships with the shim, like the keeper.
    assert "cellship/inside/objects.py" in m.shim_files()


def test_options_refuse_s3_without_a_secret_a_secret_without_s3_and_tfjob() -> None:
    with pytest.raises(UsageError, match="needs --storage-secret NAME"):
        opts(output_dir="s3://runs/a")
    with pytest.raises(UsageError, match="neither --k8s-output-dir nor --k8s-logdir"):
        opts(storage_secret="s3-creds")
    with pytest.raises(UsageError, match="drop --launcher tfjob"):
        opts(logdir="s3://runs/a", storage_secret="s3-creds", launcher="tfjob")
    with pytest.raises(KubernetesInvalid, match="--storage-secret 'Not_A_Name'"):
        opts(output_dir="s3://runs/a", storage_secret="Not_A_Name")


def test_flags_take_s3_urls_and_the_secret() -> None:
    parser = argparse.ArgumentParser()
    for names, kwargs in flags.K8S_OPTIONS:
        parser.add_argument(*names, **kwargs)
    args = parser.parse_args(["--k8s-output-dir", "s3://runs//a/", "--storage-secret", "s3-creds"])
    assert flags.from_args(args) == {"output_dir": "s3://runs/a", "storage_secret": "s3-creds"}
    with pytest.raises(UsageError, match="is not a bucket name"):
        flags.from_args(parser.parse_args(["--k8s-logdir", "s3://X/a", "--storage-secret", "s"]))
    with pytest.raises(UsageError, match="absolute path inside the pods.*s3://"):
        flags.from_args(parser.parse_args(["--k8s-logdir", "runs/a"]))


def test_deploying_from_s3_adds_a_download_step_with_secret_refs() -> None:
    from cellship.deployment import manifests as dm
    from cellship.deployment.spec import DeploySpec

    spec = DeploySpec(name="digits", image="registry.local/serve:1", model_name="digits",
                      namespace="ml", model_path="/models/digits", model_url="s3://runs/a/digits",
                      storage_secret="s3-creds")
    pod = dm.deployment(spec)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][1:] == ["-m", "cellship.storage", "download", "s3://runs/a/digits",
                                   "/models/digits"]
    assert init["image"] == "registry.local/serve:1"
    assert {e["name"] for e in init["env"] if "valueFrom" in e} == {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"}
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]
    server = pod["containers"][0]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    assert not any(e["name"].startswith("AWS_") for e in server.get("env") or [])
    assert server["command"][-5:] == ["/models/digits", "--host", "0.0.0.0", "--port", "8501"]
    plain = dm.deployment(DeploySpec(name="d", image="i:1", model_name="d"))
    assert "initContainers" not in plain["spec"]["template"]["spec"]


def test_a_job_restarted_in_place_keeps_its_keeper_after_the_upload() -> None:
    options = opts(output_dir="s3://runs/a", storage_secret="s3-creds")
    (pod,) = m.pods(ID, JobSpec(workers=1, max_restarts=2), options, owner())
    keeper = pod["spec"]["containers"][1]
    plan = json.loads(next(e["value"] for e in keeper["env"] if e["name"] == "CELLSHIP_UPLOADS"))
    assert plan["all"] is False  # the program may run again: the keeper uploads again
