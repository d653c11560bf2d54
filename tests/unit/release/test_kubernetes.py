"""``--to kubernetes``: the objects a release asks for (labels, selector, replica split,
KServe's canaryTrafficPercent) and its decisions (which version serves, what finishing an
interrupted release deletes, which version a rollback serves, the order of a promotion),
against the in-memory fake of the one Kubernetes client. The whole flow runs on the real
cluster in tests/k8s/test_release_k8s.py."""

from __future__ import annotations

import json

import pytest

from cellship.deployment import manifests as mf
from cellship.errors import UsageError
from cellship.kube.errors import KubernetesUnreachable
from cellship.kube.kinds import INFERENCE_SERVICE
from cellship.release import kserve
from cellship.release import kube_manifests as km
from cellship.release import kubernetes_target as kt
from cellship.release.canary import CanaryLimits, CanaryReport, Counts, judge
from cellship.release.kubernetes_target import KubernetesTarget
from cellship.store import ReleaseRecord
from tests.unit.kube_fake import FakeKube

SIGNATURE = {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1, 2]}}}
IMAGE = "127.0.0.1:5000/team/digits@sha256:" + "ab" * 32


def _spec(version: int = 2, replicas: int = 1, release: str = "r2") -> object:
    return km.spec("digits", version, IMAGE, namespace="ns", replicas=replicas,
                   release_id=release, signature=SIGNATURE, pull_policy="IfNotPresent")


def test_a_version_is_its_own_deployment_whose_pods_the_model_service_selects():
    dep = km.deployment(_spec())
    assert dep["metadata"]["name"] == "digits-v2"
    assert dep["spec"]["selector"] == {"matchLabels": {mf.LABEL_DEPLOYMENT: "digits-v2"}}
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[mf.LABEL_MODEL] == "digits" and pod_labels[km.RELEASED] == "digits"
    assert (pod_labels[km.VERSION], pod_labels[km.RELEASE_ID]) == ("2", "r2")
    # the track is the Deployment's only: promoting relabels it without restarting a pod
    assert dep["metadata"]["labels"][km.TRACK] == km.CANARY and km.TRACK not in pod_labels
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert "sleep" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    notes = dep["metadata"]["annotations"]
    assert json.loads(notes[km.ANNOTATION_SIGNATURE]) == SIGNATURE
    assert notes[km.ANNOTATION_IMAGE] == IMAGE

    svc = km.service("digits", "ns")
    assert svc["metadata"]["name"] == "digits" and "ownerReferences" not in svc["metadata"]
    assert svc["spec"]["selector"] == km.pod_labels("digits")
    assert all(pod_labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["ports"][0]["port"] == 8501 and mf.is_managed(svc)
    # a plain `cellship deploy` Service still selects its own Deployment's pods only
    plain = mf.service(_spec(), {"apiVersion": "apps/v1", "kind": "Deployment",
                                 "metadata": {"name": "digits-v2", "uid": "u"}})
    assert plain["spec"]["selector"] == {mf.LABEL_DEPLOYMENT: "digits-v2"}
    assert plain["metadata"]["ownerReferences"][0]["uid"] == "u"


@pytest.mark.parametrize(("replicas", "percent", "canary"), [
    (4, 25, 1), (4, 50, 2), (3, 50, 2), (1, 10, 1), (10, 100, 10), (10, 1, 1), (5, 99, 5)])
def test_canary_replicas_are_the_ceiling_of_the_share(replicas, percent, canary):
    assert km.canary_replicas(replicas, percent) == canary


def test_traffic_splits_by_replica_ratio_and_bad_shares_are_refused():
    assert km.traffic_share(1, 3) == 0.25 and km.traffic_share(2, 0) == 1.0
    with pytest.raises(UsageError, match="percentage"):
        km.canary_replicas(2, 0)
    with pytest.raises(UsageError, match="percentage"):
        km.canary_replicas(2, 150)
    with pytest.raises(UsageError, match="at least 1"):
        km.canary_replicas(0, 50)


def test_kserve_gets_the_share_as_canary_traffic_percent():
    isvc = km.inference_service(_spec(replicas=2), "digits", 20)
    assert (isvc["kind"], isvc["metadata"]["name"]) == ("InferenceService", "digits")
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["containers"][0]["image"] == IMAGE
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 2)
    full = km.inference_service(_spec(), "digits", None)
    assert "canaryTrafficPercent" not in full["spec"]["predictor"]


def test_model_names_kubernetes_cannot_carry_are_refused():
    assert km.check_model("digits") == "digits"
    for bad in ("Digits", "digits_v1", "x" * 60, "9lives"):
        with pytest.raises(UsageError, match="cannot name a Kubernetes Service"):
            km.check_model(bad)


def _version(name: str, version: int, release: str, track: str, replicas: int = 1) -> km.Version:
    return km.Version(name, version, release, track, replicas, IMAGE, {})


def test_reading_versions_back_and_which_one_serves():
    dep = km.with_track(km.deployment(_spec(3, release="r3")), km.STABLE)
    read = km.version_of(dep)
    assert read is not None
    assert (read.name, read.version, read.release_id, read.stable, read.image) == (
        "digits-v3", 3, "r3", True, IMAGE)
    assert read.signature == SIGNATURE
    assert km.version_of(mf.deployment(_spec())) is not None  # released label via extra labels
    plain = {"metadata": {"name": "other", "labels": {mf.LABEL_MODEL: "digits"}}}
    assert km.version_of(plain) is None  # a `cellship deploy` of the same model is not ours
    versions = [_version("digits-v1", 1, "a", km.STABLE), _version("digits-v2", 2, "b", km.CANARY)]
    assert km.serving(versions).name == "digits-v1"
    assert km.serving(versions[1:]) is None


def test_finishing_an_interrupted_canary_deletes_it_and_keeps_the_serving_version():
    versions = [_version("digits-v1", 1, "a", km.STABLE, 2), _version("digits-v2", 2, "b", km.CANARY)]
    plan = km.finish_plan(versions, "b")
    assert plan == km.Cleanup(False, ("digits-v2",), "digits-v1")


def test_finishing_a_release_that_had_committed_its_promotion_keeps_it():
    versions = [_version("digits-v1", 1, "a", km.STABLE, 0), _version("digits-v2", 2, "b", km.STABLE)]
    plan = km.finish_plan(versions, "b")
    assert plan == km.Cleanup(True, ("digits-v1",), "digits-v2")


def test_finishing_a_first_release_leaves_nothing_and_strays_go_too():
    assert km.finish_plan([_version("digits-v1", 1, "a", km.CANARY)], "a") == km.Cleanup(
        False, ("digits-v1",), None)
    versions = [_version("digits-v1", 1, "a", km.STABLE), _version("digits-v2", 2, "b", km.CANARY),
                _version("digits-v3", 3, "c", km.CANARY)]
    assert km.finish_plan(versions, "c") == km.Cleanup(False, ("digits-v2", "digits-v3"),
                                                       "digits-v1")


def test_rollback_goes_to_the_newest_promoted_version_before_or_the_one_asked():
    promoted = {1: "i1", 2: "i2", 4: "i4"}
    assert km.rollback_choice(4, None, promoted, "digits") == 2
    assert km.rollback_choice(4, 1, promoted, "digits") == 1
    with pytest.raises(UsageError, match="already the one served"):
        km.rollback_choice(4, 4, promoted, "digits")
    with pytest.raises(UsageError, match="never promoted.*versions that were: 1, 2, 4"):
        km.rollback_choice(4, 3, promoted, "digits")
    with pytest.raises(UsageError, match="none before it"):
        km.rollback_choice(1, None, {1: "i1"}, "digits")


def test_the_canary_window_counts_only_what_happened_in_it():
    before = Counts(10, 1, {0.01: 9.0, 0.1: 10.0, float("inf"): 10.0})
    after = Counts(110, 1, {0.01: 9.0, 0.1: 109.0, float("inf"): 110.0})
    other = Counts(50, 2, {0.01: 50.0, 0.1: 50.0, float("inf"): 50.0})
    window = (after - before) + other
    assert (window.total, window.failed) == (150, 2)
    assert window.p99_ms == pytest.approx(100.0)
    report = judge(CanaryReport(2, 1, 0.0, window.total, window.failed, window.p99_ms),
                   CanaryLimits(max_error_rate=0.01))
    assert report.failed_check == "error-rate" and "2 of 150" in report.reason
    assert judge(CanaryReport(2, 1, 0.5, 10, 0, 5.0), CanaryLimits(max_difference=0.1)
                 ).failed_check == "difference"
    assert judge(CanaryReport(2, 1, 0.0, 10, 0, 5.0), CanaryLimits()).failed_check is None


# -- the target against the fake client ------------------------------------------------------
def _target(fake: FakeKube, tmp_path, store=None, **more) -> KubernetesTarget:
    return KubernetesTarget("127.0.0.1:5000/team", "127.0.0.1:5000/base:1", namespace="ns",
                            client=fake, builds=tmp_path / "builds", store=store, **more)


def _add_version(fake: FakeKube, version: int, release: str, track: str, replicas: int = 1):
    fake.add(km.with_track(km.deployment(_spec(version, replicas, release)), track))


def test_current_is_the_stable_deployment_and_numbers_are_never_reused(tmp_path):
    fake = FakeKube()
    target = _target(fake, tmp_path)
    assert target.current("digits") is None
    _add_version(fake, 3, "r3", km.STABLE)
    _add_version(fake, 4, "r4", km.CANARY)
    current = target.current("digits")
    assert (current.version, current.signature) == (3, SIGNATURE)
    (tmp_path / "builds" / "digits" / "7").mkdir(parents=True)  # a rejected version built here
    assert target.next_version("digits", current) == 8


def test_promotion_scales_up_waits_commits_then_retires_the_old_version(tmp_path, monkeypatch):
    fake = FakeKube()
    _add_version(fake, 1, "r1", km.STABLE, replicas=3)
    _add_version(fake, 2, "r2", km.CANARY, replicas=1)
    order: list[str] = []

    def wait_ready(client, rollout, timeout, **_kw):
        dep = client.get("Deployment", "ns", rollout.name)
        order.append(f"ready {rollout.name} {dep['spec']['replicas']} "
                     f"{dep['metadata']['labels'][km.TRACK]}")
        old = client.get("Deployment", "ns", "digits-v1")  # untouched until the commit
        assert (old["spec"]["replicas"], old["metadata"]["labels"][km.TRACK]) == (3, km.STABLE)

    monkeypatch.setattr(kt, "wait_ready", wait_ready)
    target = _target(fake, tmp_path, replicas=3)
    target._promote("digits", "digits-v2", "promote")
    assert order == ["ready digits-v2 3 canary"]
    assert fake.names("Deployment") == ["digits-v2"]
    assert target.current("digits").version == 2
    assert fake.get("Service", "ns", "digits")["spec"]["selector"] == km.pod_labels("digits")
    scaled = [c for c in fake.calls if c[0] in ("replace", "delete")]
    # new scaled, new labelled stable, old scaled to 0, old deleted: in that order
    assert scaled == [("replace", "Deployment", "digits-v2"), ("replace", "Deployment", "digits-v2"),
                      ("replace", "Deployment", "digits-v1"),
                      ("delete", "Deployment", "digits-v1", "Foreground")]


def test_a_cluster_failure_is_a_sentence_naming_the_step_and_the_old_version_stays(tmp_path):
    fake = FakeKube()
    _add_version(fake, 1, "r1", km.STABLE)
    fake.add(km.service("digits", "ns"))
    staged = kt.Staged(kt.ModelVersion("digits", 2, tmp_path, {"signature": SIGNATURE}),
                       tmp_path, {"deployment": "digits-v2", "image": IMAGE, "release": "r2"})
    fake.fail_on[("create", "Deployment")] = KubernetesUnreachable(
        "The Kubernetes API server at https://127.0.0.1:6443 cannot be reached", None)
    with pytest.raises(kt.ReleaseError) as err:
        _target(fake, tmp_path, timeout=5).canary(staged, None, None, CanaryLimits())
    assert err.value.step == "canary"
    assert str(err.value).startswith("Could not create the canary Deployment digits-v2 in "
                                     "namespace ns: The Kubernetes API server"), str(err.value)
    assert fake.names("Deployment") == ["digits-v1"]


def test_reject_deletes_the_canary_and_says_the_image_stays(tmp_path):
    fake = FakeKube()
    _add_version(fake, 1, "r1", km.STABLE)
    _add_version(fake, 2, "r2", km.CANARY)
    staged = kt.Staged(kt.ModelVersion("digits", 2, tmp_path, {}), tmp_path,
                       {"deployment": "digits-v2", "image": IMAGE})
    where = _target(fake, tmp_path).reject(staged, "r2")
    assert fake.names("Deployment") == ["digits-v1"]
    assert IMAGE in where and "stays in the registry" in where


def test_finish_interrupted_on_the_fake_cluster(tmp_path):
    fake = FakeKube()
    _add_version(fake, 1, "r1", km.STABLE, replicas=2)
    _add_version(fake, 2, "r2", km.CANARY)
    promoted, moved = _target(fake, tmp_path).finish_interrupted("digits", "r2", 2)
    assert (promoted, list(moved)) == (False, ["Deployment digits-v2 deleted"])
    assert fake.names("Deployment") == ["digits-v1"]
    assert fake.get("Deployment", "ns", "digits-v1")["spec"]["replicas"] == 2


def test_rollback_redeploys_the_recorded_image(tmp_path, store, monkeypatch):
    fake = FakeKube()
    _add_version(fake, 2, "r2", km.STABLE)
    for version, outcome in ((1, "promoted"), (2, "promoted"), (3, "rolled-back")):
        store.begin_release(ReleaseRecord(
            id=f"r{version}", kind="release", model="digits", target="kubernetes",
            outcome=outcome, user="u", started=float(version), version=version,
            details={"image": f"{IMAGE[:-4]}000{version}"}), lambda _pid: False)
    monkeypatch.setattr(kt, "wait_ready", lambda *a, **k: None)
    before, after, moved = _target(fake, tmp_path, store=store).rollback("digits", None, "rb")
    assert (before, after) == (2, 1)
    assert fake.names("Deployment") == ["digits-v1"]
    dep = fake.get("Deployment", "ns", "digits-v1")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("0001")
    assert dep["metadata"]["labels"][km.TRACK] == km.STABLE and "digits-v2" in moved[0]


# -- KServe: the same release as canaryTrafficPercent on one InferenceService --------------------
def test_kserve_canary_keeps_the_served_version_described_and_can_be_put_back():
    v1 = kserve.promoted_body({}, _spec(1, 2, "r1"), "digits")
    v1["metadata"]["resourceVersion"] = "7"
    assert v1["metadata"]["labels"][km.TRACK] == km.STABLE
    assert "canaryTrafficPercent" not in v1["spec"]["predictor"]

    canary = kserve.canary_body(v1, _spec(2, 2, "r2"), "digits", 25)
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert canary["spec"]["predictor"]["containers"][0]["image"] == IMAGE
    # what serves is still v1, as far as the labels say; the canary is in the annotations
    assert km.version_of(canary).version == 1 and km.version_of(canary).stable
    assert kserve.canary_release(canary) == "r2"
    assert canary["metadata"]["resourceVersion"] == "7"

    back = kserve.reverted_body(canary)
    assert back["spec"]["predictor"] == v1["spec"]["predictor"]
    assert kserve.canary_release(back) is None
    assert not set(kserve.CANARY_KEYS) & set(back["metadata"]["annotations"])

    promoted = kserve.promoted_body(canary, _spec(2, 2, "r2"), "digits")
    assert km.version_of(promoted).version == 2 and kserve.canary_release(promoted) is None
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert promoted["metadata"]["resourceVersion"] == "7"


def test_kserve_first_version_has_nothing_to_go_back_to():
    first = kserve.canary_body(None, _spec(1, 2, "r1"), "digits", 25)
    assert "canaryTrafficPercent" not in first["spec"]["predictor"]  # nothing else serves
    assert kserve.canary_release(first) == "r1"
    assert kserve.reverted_body(first) is None  # rejected: the InferenceService is deleted


def test_kserve_canary_pods_are_those_running_the_new_image():
    pods = [{"metadata": {"name": n}, "spec": {"containers": [{"image": i}]}}
            for n, i in (("a", IMAGE), ("b", "old@sha256:1"), ("c", IMAGE))]
    assert [p["metadata"]["name"] for p in kserve.canary_pods(pods, IMAGE)] == ["a", "c"]


def test_with_kserve_installed_a_rejection_puts_the_previous_predictor_back(tmp_path):
    fake = FakeKube()
    fake.crds.add(INFERENCE_SERVICE.resource)
    v1 = kserve.promoted_body({}, _spec(1, 1, "r1"), "digits")
    fake.add(v1)
    target = _target(fake, tmp_path)
    fake.replace(kserve.canary_body(fake.get("InferenceService", "ns", "digits"),
                                    _spec(2, 1, "r2"), "digits", 50))
    assert target.kserve and target.current("digits").version == 1
    staged = kt.Staged(kt.ModelVersion("digits", 2, tmp_path, {}), tmp_path,
                       {"deployment": "digits-v2", "image": IMAGE, "release": "r2"})
    target.reject(staged, "r2")
    isvc = fake.get("InferenceService", "ns", "digits")
    assert kserve.canary_release(isvc) is None
    assert isvc["spec"]["predictor"] == v1["spec"]["predictor"]
    assert fake.names("Deployment") == []


def test_the_target_comes_back_from_its_record_beside_the_canary_report(tmp_path):
    target = _target(FakeKube(), tmp_path, replicas=4, canary=25)
    details = target.where() | {"canary": {"version": 2, "errors": 0}, "image": IMAGE}
    again = KubernetesTarget.from_record(details, client=FakeKube())
    assert (again.namespace, again.replicas, again.percent, again.canary_pods) == ("ns", 4, 25, 1)
