"""The --backend kubernetes flags of %%train / `cellship train`: parsed and validated early,
refused on other backends, stored as spec["kubernetes"], shown by --dry-run as manifests;
and `cellship jobs --backend kubernetes` listing the cluster's jobs by label. All against
the in-memory API (tests/unit/kube_fake.py): no cluster."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest
import yaml

from cellship.cli import main
from cellship.errors import UsageError
from cellship.kube import flags
from cellship.kube.options import KubernetesOptions
from cellship.store import Store
from cellship.train import api
from cellship.train.kubernetes import backend as kb
from cellship.train.kubernetes import manifests
from cellship.train.kubernetes.manifests import JobIdentity
from cellship.train.options import add_job_options, kubernetes_from_args, spec_from_args
from cellship.train.program import build_program
from cellship.train.spec import JobSpec
from tests.unit.kube_fake import FakeKube, serve


@pytest.fixture(autouse=True)
def no_k8s_env(monkeypatch):
    for var in flags.ENV_DEFAULTS.values():
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def kube(monkeypatch) -> FakeKube:
    """Every KubernetesBackend made by name (get_backend) talks to this fake."""
    return serve(monkeypatch, FakeKube(tfjob_crd=True))


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text("print('training')\n")
    return path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_job_options(parser)
    return parser.parse_args(list(argv))


# -- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("dedicated=ml:NoSchedule",
     {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}),
    ("nvidia.com/gpu:NoSchedule", {"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}),
    ("nvidia.com/gpu:noexecute", {"key": "nvidia.com/gpu", "operator": "Exists",
                                  "effect": "NoExecute"}),
    ("spot", {"key": "spot", "operator": "Exists"}),
    ("spot:Exists", {"key": "spot", "operator": "Exists"}),
    ("pool=gpu", {"key": "pool", "operator": "Equal", "value": "gpu"}),
    ('{"key": "x", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}',
     {"key": "x", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}),
])
def test_toleration_syntax(text, expected) -> None:
    assert flags.parse_toleration(text) == [expected]


def test_toleration_json_list() -> None:
    assert flags.parse_toleration('[{"key": "a", "operator": "Exists"}, {"operator": "Exists"}]') \
        == [{"key": "a", "operator": "Exists"}, {"operator": "Exists"}]


@pytest.mark.parametrize("text, words", [
    ("a=b:Sometimes", "not one of NoSchedule, PreferNoSchedule, NoExecute"),
    ("{not json", "not valid JSON"),
    ('{"key": "a", "operatr": "Exists"}', "unknown field(s) ['operatr']"),
    ('{"key": "a", "operator": "Exists", "value": "b"}', "Exists takes no value"),
    ('{"key": "a", "operator": "In"}', "Equal or Exists"),
    ('{"key": "a", "tolerationSeconds": 5}', "only applies to effect NoExecute"),
    ("bad key!:NoSchedule", "not a valid taint key"),
    ("", "needs a taint"),
])
def test_bad_toleration_says_what_and_how(text, words) -> None:
    with pytest.raises(UsageError, match="--toleration") as info:
        flags.parse_toleration(text)
    assert words in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("data:/data", {"claim": "data", "mount_path": "/data", "read_only": False}),
    ("data:/data:ro", {"claim": "data", "mount_path": "/data", "read_only": True}),
    ("data:/data:RW", {"claim": "data", "mount_path": "/data", "read_only": False}),
    ("runs/team/a:/logs", {"claim": "runs", "mount_path": "/logs", "read_only": False,
                           "sub_path": "team/a"}),
])
def test_volume_syntax(text, expected) -> None:
    assert flags.parse_volume(text) == expected


@pytest.mark.parametrize("text, words", [
    ("data", "must look like CLAIM:/MOUNT/PATH[:ro]"),
    ("data:relative", "must be absolute"),
    ("data:/data:rx", "ro or rw"),
    ("Data_Set:/data", "not a valid Kubernetes name"),
    (":/data", "must look like"),
])
def test_bad_volume(text, words) -> None:
    with pytest.raises(UsageError, match="--volume") as info:
        flags.parse_volume(text)
    assert words in str(info.value)


def test_two_volumes_on_one_path_are_refused() -> None:
    with pytest.raises(UsageError, match="two volumes are mounted at /data"):
        kubernetes_from_args(parse("--backend", "kubernetes", "--volume", "a:/data",
                                   "--volume", "b:/data/"))


def test_node_selector_pairs_and_commas() -> None:
    assert flags.parse_node_selector(["gpu=a100,zone=b", "nvidia.com/gpu.present=true", "x="]) \
        == {"gpu": "a100", "zone": "b", "nvidia.com/gpu.present": "true", "x": ""}
    for bad in ("gpu", "=a100", "gpu=a b", "k/=v"):
        with pytest.raises(UsageError, match="--node-selector .* must look like LABEL=VALUE"):
            flags.parse_node_selector([bad])


@pytest.mark.parametrize("good", ["2", "0.5", "500m", "4Gi", "512Mi", "1e3", "1.5G"])
def test_quantities_kubernetes_accepts(good) -> None:
    assert flags.parse_quantity(good, "--memory") == good


def test_quantity_with_bytes_suffix_suggests_the_binary_unit() -> None:
    with pytest.raises(UsageError, match=r"--memory '4GB' .*did you mean 4Gi\?"):
        flags.parse_quantity("4GB", "--memory")
    with pytest.raises(UsageError, match="not a Kubernetes quantity"):
        flags.parse_quantity("two", "--cpu")


def test_every_flag_maps_onto_the_options_dict() -> None:
    args = parse("--backend", "kubernetes", "--namespace", "ml", "--image", "tf:1",
                 "--context", "lab", "--launcher", "tfjob", "--node-selector", "gpu=a100",
                 "--toleration", "gpu:NoSchedule", "--image-pull-secret", "regcred,other",
                 "--image-pull-secret", "regcred", "--service-account", "trainer",
                 "--volume", "data:/data:ro", "--cpu", "2", "--memory", "4Gi",
                 "--cpu-limit", "4", "--memory-limit", "8Gi", "--k8s-logdir", "/data/tb",
                 "--k8s-output-dir", "/data/out", "--image-pull-policy", "Never",
                 "--peer-timeout", "2m", "--fetch-linger", "0")
    spec = spec_from_args(args)
    data = kubernetes_from_args(args)
    assert spec.backend == "kubernetes"
    assert data == {
        "namespace": "ml", "image": "tf:1", "context": "lab", "launcher": "tfjob",
        "node_selector": {"gpu": "a100"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "image_pull_secrets": ["regcred", "other"], "service_account": "trainer",
        "volumes": [{"claim": "data", "mount_path": "/data", "read_only": True}],
        "cpu": "2", "memory": "4Gi", "cpu_limit": "4", "memory_limit": "8Gi",
        "logdir": "/data/tb", "output_dir": "/data/out", "image_pull_policy": "Never",
        "peer_timeout": 120.0, "fetch_linger": 0.0}
    options = KubernetesOptions.from_dict(data)  # exactly what the backend will read
    assert options.volumes[0].read_only and options.peer_timeout == 120.0
    assert options.fetch_linger == 0.0  # 0: the chief pod does not wait for the copy
    json.dumps(data)  # stored in the job's spec.json


def test_no_flags_no_options() -> None:
    assert kubernetes_from_args(parse()) == {}


@pytest.mark.parametrize("argv, words", [
    (["--k8s-logdir", "tb"], "--k8s-logdir 'tb' must be an absolute path"),
    (["--namespace", "ML"], "--namespace: Namespace 'ML' is not valid"),
    (["--service-account", "Bad Name"], "--service-account 'Bad Name' is not a valid"),
    (["--image-pull-secret", "x_y"], "--image-pull-secret 'x_y' is not a valid"),
    (["--image", "tf 2"], "--image 'tf 2' must be one word"),
    (["--peer-timeout", "soon"], "--peer-timeout: 'soon' is not a duration"),
    (["--fetch-linger", "-5"], "--fetch-linger"),
])
def test_bad_values_are_usage_errors_naming_the_flag(argv, words) -> None:
    with pytest.raises(UsageError) as info:
        kubernetes_from_args(parse("--backend", "kubernetes", *argv))
    assert words in str(info.value)


def test_kubernetes_flags_on_the_local_backend_are_refused() -> None:
    with pytest.raises(UsageError, match=r"^--image only applies to --backend kubernetes"):
        spec_from_args(parse("--image", "tf:1"))
    with pytest.raises(UsageError, match="--namespace and --cpu only apply to --backend "
                                         "kubernetes.*drop them"):
        spec_from_args(parse("--backend", "local", "--namespace", "ml", "--cpu", "1"))


def test_backend_from_the_environment_allows_the_flags(monkeypatch) -> None:
    monkeypatch.setenv("CELLSHIP_BACKEND", "kubernetes")
    assert spec_from_args(parse("--image", "tf:1")).backend == "kubernetes"


# -- environment defaults -------------------------------------------------------------------
def test_environment_fills_what_flags_did_not_give() -> None:
    env = {"CELLSHIP_K8S_IMAGE": "tf:env", "CELLSHIP_K8S_NAMESPACE": "team",
           "CELLSHIP_K8S_CONTEXT": "lab"}
    assert flags.resolve({"image": "tf:flag"}, "kubernetes", env) == {
        "image": "tf:flag", "namespace": "team", "context": "lab"}
    assert flags.resolve(None, "local", env) is None  # never read for other backends


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(UsageError, match=r"CELLSHIP_K8S_NAMESPACE"):
        flags.resolve({}, "kubernetes", {"CELLSHIP_K8S_NAMESPACE": "Not_Valid"})


def test_options_for_another_backend_via_python_are_refused() -> None:
    with pytest.raises(UsageError, match="only apply to backend='kubernetes'"):
        api.backend_extra(JobSpec(backend="local"), {"image": "tf:1"})


# -- into the stored spec -------------------------------------------------------------------
def test_cli_train_stores_the_options_and_the_backend_uses_them(kube, script, capsys) -> None:
    code = main(["train", str(script), "--backend", "kubernetes", "--image", "tf:1",
                 "--namespace", "ml", "--toleration", "gpu:NoSchedule", "--volume",
                 "data:/data:ro", "--memory", "2Gi", "--detach"])
    assert code == 0
    job_id = capsys.readouterr().out.strip()
    record = Store.default().get_job(job_id)
    assert record.backend == "kubernetes"
    assert record.spec["kubernetes"] == {
        "image": "tf:1", "namespace": "ml",
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"claim": "data", "mount_path": "/data", "read_only": True}],
        "memory": "2Gi"}
    pods = [o for (kind, ns, _), o in kube.objects.items() if kind == "Pod"]
    assert len(pods) == 1 and pods[0]["metadata"]["namespace"] == "ml"
    spec = pods[0]["spec"]
    assert spec["containers"][0]["image"] == "tf:1"
    assert spec["containers"][0]["resources"] == {"requests": {"memory": "2Gi"}}
    assert spec["tolerations"][0] == {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert {t["key"] for t in spec["tolerations"][1:]} == {  # cellship's own, for node loss
        "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}
    claims = [v["persistentVolumeClaim"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"claimName": "data", "readOnly": True}]  # among the pod's own volumes


def test_python_api_and_environment_defaults(kube, monkeypatch, store) -> None:
    monkeypatch.setenv("CELLSHIP_K8S_IMAGE", "tf:env")
    monkeypatch.setenv("CELLSHIP_K8S_NAMESPACE", "team")
    job = api.submit("print(1)", backend="kubernetes", kubernetes={"cpu": "1"}, store=store,
                     detached=True)
    assert job.record.spec["kubernetes"] == {"cpu": "1", "image": "tf:env", "namespace": "team"}
    assert any(ns == "team" for (_, ns, _) in kube.objects)


def test_local_jobs_ignore_the_kubernetes_environment(monkeypatch, script, capsys) -> None:
    monkeypatch.setenv("CELLSHIP_K8S_IMAGE", "tf:env")
    assert main(["train", str(script), "--dry-run"]) == 0
    assert "TF_CONFIG per replica" in capsys.readouterr().out


def test_no_image_and_no_registry_fails_before_anything_is_recorded(kube, script, capsys) -> None:
    assert main(["train", str(script), "--backend", "kubernetes", "--detach"]) == 1
    err = capsys.readouterr().err
    assert "No --image given" in err and "--registry" in err and "Traceback" not in err
    assert Store.default().list_jobs() == [] and kube.objects == {}


def test_cli_refuses_kubernetes_flags_on_local(script, capsys) -> None:
    assert main(["train", str(script), "--image", "tf:1"]) == 1
    err = capsys.readouterr().err
    assert "cellship: error: --image only applies to --backend kubernetes" in err
    assert "Traceback" not in err


def test_unknown_flag_lists_the_kubernetes_ones_too(script, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", str(script), "--imag", "x", "--bogus"])
    err = capsys.readouterr().err
    assert "--toleration" in err and "--node-selector" in err


# -- dry run --------------------------------------------------------------------------------
def _yaml_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text[text.index("\n---\n") + 1:]) if d]


def test_dry_run_prints_the_pods_launch_as_yaml(script, capsys) -> None:
    code = main(["train", str(script), "--backend", "kubernetes", "--image", "tf:1",
                 "--workers", "2", "--namespace", "ml", "--node-selector", "gpu=a100",
                 "--name", "digits", "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert "print('training')" in out  # the program, once
    assert "digits-00000000-worker-1.digits-00000000.ml.svc:2222" in out  # TF_CONFIG
    docs = _yaml_docs(out)
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "Pod", "Pod"]
    assert docs[0]["data"]["program.py"].endswith("shown above>")
    assert "uid" not in docs[0]["metadata"]
    assert docs[2]["metadata"]["ownerReferences"][0]["uid"].startswith("<uid")
    assert docs[3]["spec"]["nodeSelector"] == {"gpu": "a100"}
    assert docs[3]["spec"]["containers"][0]["image"] == "tf:1"
    assert Store.default().list_jobs() == []  # nothing was submitted


def test_dry_run_with_tfjob_launcher() -> None:
    spec = JobSpec(backend="kubernetes", workers=2, ps=1)
    text = api.dry_run_text(spec, build_program("print(1)\n"),
                            {"image": "tf:1", "launcher": "tfjob"})
    docs = _yaml_docs(text)
    assert [d["kind"] for d in docs] == ["TFJob", "ConfigMap"]
    assert set(docs[0]["spec"]["tfReplicaSpecs"]) == {"Chief", "Worker", "PS"}
    assert docs[1]["metadata"]["ownerReferences"][0]["kind"] == "TFJob"
    assert "set in every pod by the Kubeflow training operator" in text
    assert "namespace default (none given" in text


def test_dry_run_needs_an_image_or_a_registry_too() -> None:
    with pytest.raises(UsageError, match="No --image given"):
        api.dry_run_text(JobSpec(backend="kubernetes"), build_program("print(1)\n"), {})


def test_dry_run_with_a_registry_shows_the_default_image_it_would_make() -> None:
    text = api.dry_run_text(JobSpec(backend="kubernetes"), build_program("print(1)\n"),
                            {"registry": "reg.example:5000"})
    assert "image: 'reg.example:5000/cellship-tensorflow:<made at submit: tensorflow/tensorflow:" in text


def test_magic_passes_the_flags_through(kube, capsys) -> None:
    pytest.importorskip("IPython")
    from cellship_magics.magics import CellshipMagics

    magics = CellshipMagics(shell=None)
    magics.shell = SimpleNamespace(user_ns={"_ih": [""]})
    magics.train("--backend kubernetes --image tf:1 --toleration 'a=b:NoSchedule' "
                 "--toleration '{\"key\": \"c\", \"operator\": \"Exists\"}' --dry-run",
                 "print('cell')\n")
    docs = _yaml_docs(capsys.readouterr().out)
    assert docs[2]["spec"]["tolerations"][:2] == [
        {"key": "a", "operator": "Equal", "value": "b", "effect": "NoSchedule"},
        {"key": "c", "operator": "Exists"}]
    with pytest.raises(UsageError, match="--cpu only applies to --backend kubernetes"):
        magics.train("--cpu 2", "print('cell')\n")
    magics.train("--backend kubernetes --image tf:1 --namespace ml --detach", "print('cell')\n")
    (record,) = Store.default().list_jobs()
    assert record.spec["kubernetes"] == {"image": "tf:1", "namespace": "ml"}


# -- jobs from other kernels and machines ---------------------------------------------------
def foreign_job(kube: FakeKube, job_id: str, name: str, namespace: str,
                phases: list[str], launcher: str = "pods") -> None:
    """What another machine's cellship left in the cluster."""
    identity = JobIdentity(job_id, name, namespace)
    spec = JobSpec(workers=len(phases), backend="kubernetes")
    options = KubernetesOptions(image="tf:1", namespace=namespace, launcher=launcher)
    if launcher == "tfjob":
        owner = kube.add(manifests.tfjob(identity, spec, options), status={"conditions": [
            {"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]})
        kube.add(manifests.config_map(identity, "print(1)\n", owner=owner, shim={}))
        for i, phase in enumerate(phases):
            kube.add({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{identity.prefix}-worker-{i}", "namespace": namespace,
                "labels": manifests.labels(identity) | {
                    "training.kubeflow.org/replica-type": "Worker",
                    "training.kubeflow.org/replica-index": str(i)}}}, status={"phase": phase})
        return
    owner = kube.add(manifests.config_map(identity, "print(1)\n", shim={}))
    kube.add(manifests.headless_service(identity, owner))
    for pod, phase in zip(manifests.pods(identity, spec, options, owner), phases):
        kube.add(pod, status={"phase": phase})


def test_discover_finds_jobs_by_label(kube, store, monkeypatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "bob@example.org")  # the other machine's user
    foreign_job(kube, "aaaa0001", "digits", "ml", ["Running", "Pending"])
    foreign_job(kube, "aaaa0002", "done", "ml", ["Succeeded"])
    foreign_job(kube, "aaaa0003", "elsewhere", "other", ["Failed"])
    foreign_job(kube, "aaaa0004", "op", "ml", ["Running"], launcher="tfjob")
    kube.add({"apiVersion": "v1", "kind": "ConfigMap",  # not cellship's: never listed
              "metadata": {"name": "unrelated", "namespace": "ml", "labels": {"app": "x"}}})
    backend = kb.KubernetesBackend(store)
    found = backend.discover(namespace="ml")
    assert [j["id"] for j in found] == ["aaaa0004", "aaaa0002", "aaaa0001"]  # newest first
    by_id = {j["id"]: j for j in found}
    assert by_id["aaaa0001"] | {"created": None} == {
        "id": "aaaa0001", "name": "digits", "namespace": "ml", "created": None,
        "launcher": "pods", "object": "digits-aaaa0001",
        "pods": {"worker-0": "Running", "worker-1": "Pending"}, "status": "running",
        "nodes": {"worker-0": None, "worker-1": None}, "user": "bob-example.org"}
    assert by_id["aaaa0001"]["created"].startswith("2026-")
    assert by_id["aaaa0002"]["status"] == "succeeded"
    assert (by_id["aaaa0004"]["launcher"], by_id["aaaa0004"]["status"],
            by_id["aaaa0004"]["pods"]) == ("tfjob", "running", {"worker-0": "Running"})
    everywhere = backend.discover(all_namespaces=True)
    assert {j["id"]: j["status"] for j in everywhere}["aaaa0003"] == "failed"
    assert backend.discover() == []  # the context's namespace ("default") has none
    assert ("list", "ConfigMap", None) in kube.calls


def test_discover_without_the_tfjob_crd_still_lists_pod_jobs(monkeypatch, store) -> None:
    fake = FakeKube(tfjob_crd=False)
    foreign_job(fake, "bbbb0001", "digits", "default", ["Running"])
    backend = kb.KubernetesBackend(store, client_factory=lambda options: fake)
    assert [j["id"] for j in backend.discover()] == ["bbbb0001"]
    assert not any(c[:2] == ("list", "TFJob") for c in fake.calls)


def test_cellship_jobs_merges_the_store_and_marks_cluster_jobs(kube, capsys,
                                                               monkeypatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    backend = kb.KubernetesBackend(Store.default())
    mine = backend.submit(JobSpec(backend="kubernetes", name="mine"), build_program("print(1)\n"),
                          extra={"kubernetes": {"image": "tf:1", "namespace": "ml"}})
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    foreign_job(kube, "cccc0001", "theirs", "ml", ["Running"])
    foreign_job(kube, "cccc0002", "far", "other", ["Running"])
    assert main(["jobs", "--backend", "kubernetes", "--namespace", "ml"]) == 0
    out = capsys.readouterr().out
    assert out.split()[:4] == ["ID", "NAME", "NAMESPACE", "USER"]
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "theirs (cluster)" in lines["cccc0001"] and "Running" in lines["cccc0001"]
    assert " bob " in lines["cccc0001"]
    assert "mine" in lines[mine.id] and "(cluster)" not in lines[mine.id]
    assert " alice " in lines[mine.id]  # the job's own objects say who submitted it
    assert "cccc0002" not in out
    assert "submitted from another kernel or machine" in out

    assert main(["jobs", "--backend", "kubernetes", "-A", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {mine.id, "cccc0001", "cccc0002"}
    assert rows[mine.id]["known"] and not rows["cccc0002"]["known"]
    assert rows["cccc0002"]["namespace"] == "other" and rows["cccc0002"]["created"].endswith("+00:00")
    assert (rows[mine.id]["user"], rows["cccc0002"]["user"]) == ("alice", "bob")


def test_cellship_jobs_keeps_store_jobs_whose_objects_are_gone(kube, capsys) -> None:
    backend = kb.KubernetesBackend(Store.default())
    job = backend.submit(JobSpec(backend="kubernetes", name="gone"), build_program("print(1)\n"),
                         extra={"kubernetes": {"image": "tf:1", "namespace": "ml"}})
    backend.cancel(job)
    assert main(["jobs", "--backend", "kubernetes", "--namespace", "ml"]) == 0
    out = capsys.readouterr().out
    assert job.id in out and "cancelled" in out
    assert main(["jobs", "--backend", "kubernetes", "--namespace", "elsewhere"]) == 0
    assert "no cellship jobs in namespace elsewhere" in capsys.readouterr().out


def test_cellship_jobs_namespace_from_the_environment(kube, monkeypatch, capsys) -> None:
    foreign_job(kube, "dddd0001", "theirs", "team", ["Pending"])
    monkeypatch.setenv("CELLSHIP_K8S_NAMESPACE", "team")
    assert main(["jobs", "--backend", "kubernetes", "--status", "pending"]) == 0
    assert "dddd0001" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["jobs", "--namespace", "ml"], "--namespace only applies to the cluster's jobs: add "
                                    "--backend kubernetes"),
    (["jobs", "-A"], "--all-namespaces only applies"),
    (["jobs", "--backend", "kubernetes", "--namespace", "ml", "-A"], "exclude each other"),
    (["jobs", "--backend", "nomad"], "Unknown backend 'nomad'"),
])
def test_cellship_jobs_usage_errors(argv, words, capsys) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_cellship_jobs_local_filter(capsys) -> None:
    assert main(["jobs", "--backend", "local"]) == 0
    assert "no jobs yet" in capsys.readouterr().out
