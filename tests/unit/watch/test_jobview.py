"""The live job view's model: merged log lines, progress and ETA from the Keras callback's
events, curves from events and relayed scalars, deltas and snapshots for the widget."""

from __future__ import annotations

import json

from cellship.inside.relay import (
    RELAY_MARK,
    ScalarPoint,
    decode_event,
    decode_relay,
    encode_event,
    encode_relay,
    is_relay,
)
from cellship.store import JobRecord, ReplicaRecord
from cellship.watch.jobview import (
    JobViewModel,
    LogDedup,
    Progress,
    dedup_key,
    event_points,
    is_error,
    is_partial_bar,
    job_header,
    replica_rows,
)
from cellship.watch.logstream import LogLine


def test_event_lines_round_trip_and_are_hidden_like_metric_lines() -> None:
    line = encode_event("progress", epoch=2, epochs=5, step=7, steps=40, t=12.5,
                        logs={"loss": 0.25})
    assert is_relay(line) and is_relay("\r\n" + line)
    assert decode_event(line) == {"kind": "progress", "epoch": 2, "epochs": 5, "step": 7,
                                  "steps": 40, "t": 12.5, "logs": {"loss": 0.25}}
    assert decode_relay(line) is None  # a metric reader skips events
    metric = encode_relay(ScalarPoint("train", "epoch_loss", 1, 2.0, 0.5))
    assert decode_event(metric) is None and metric.startswith(RELAY_MARK)
    assert decode_event(line[:-3]) is None  # damaged JSON
    assert decode_event(line.replace("progress", "nonsense")) is None  # unknown kind
    assert not is_relay("Epoch 1/5")


def test_identical_lines_of_two_workers_show_once_with_both_replicas() -> None:
    logs = LogDedup()
    first, new = logs.add(LogLine("worker 0", "Epoch 1/3"), now=10.0)
    again, merged_new = logs.add(LogLine("worker 1", "Epoch 1/3"), now=10.2)
    assert new and not merged_new and again is first
    assert first.replicas == ["worker 0", "worker 1"]
    # the same replica printing the same line again is a new line
    _, new = logs.add(LogLine("worker 0", "Epoch 1/3"), now=11.0)
    assert new
    # Keras's epoch lines differ only in the timings each worker measured
    a, _ = logs.add(LogLine("worker 0", "16/16 - 2s - loss: 1.6297 - 2s/epoch - 101ms/step"), now=12)
    b, new = logs.add(LogLine("worker 1", "16/16 - 2s - loss: 1.6297 - 2s/epoch - 97ms/step"), now=12)
    assert b is a and not new
    c, new = logs.add(LogLine("worker 1", "16/16 - 2s - loss: 1.6300 - 2s/epoch - 97ms/step"), now=12)
    assert new and c is not a  # other numbers: another line
    # too late to be the same print
    _, new = logs.add(LogLine("worker 1", "Epoch 1/3"), now=100.0)
    assert new
    assert logs.text().splitlines()[:2] == ["[worker 0, worker 1] Epoch 1/3", "[worker 0] Epoch 1/3"]


def test_dedup_keeps_a_bounded_log_and_says_so() -> None:
    logs = LogDedup(max_entries=3)
    for i in range(5):
        logs.add(LogLine("worker 0", f"line {i}"), now=float(i))
    assert [e.text for e in logs.entries.values()] == ["line 2", "line 3", "line 4"]
    assert logs.text().startswith("[cellship] ... 2 earlier line(s) not shown")
    assert dedup_key("loss went from 3s to 2s") == "loss went from 3s to 2s"


def test_errors_and_partial_bars_are_recognised() -> None:
    assert is_error("Traceback (most recent call last):")
    assert is_error("RuntimeError: worker one broke") and is_error("  ValueError: x")
    assert not is_error("Epoch 1/3") and not is_error("no error here")
    assert is_partial_bar("  3/47 ━━━━━━━━━━━━━━━━━━━━ 1s 12ms/step - loss: 1.2")
    assert not is_partial_bar("47/47 ━━━━━━━━━━━━━━━━━━━━ 1s 12ms/step - loss: 1.2")
    assert not is_partial_bar("3/4 of the data")


def test_progress_rate_and_eta_come_from_the_event_times() -> None:
    p = Progress("worker 0")
    p.update({"kind": "train_begin", "epochs": 3, "steps": 100, "t": 0.0})
    p.update({"kind": "epoch_begin", "epoch": 1, "epochs": 3, "steps": 100, "t": 10.0})
    p.update({"kind": "progress", "epoch": 1, "step": 25, "steps": 100, "t": 15.0,
              "logs": {"loss": 2.0, "nan": float("nan")}})
    assert (p.epoch, p.epochs, p.step, p.steps) == (1, 3, 25, 100)
    assert p.rate == 5.0 and p.eta == 15.0
    assert p.logs == {"loss": 2.0}
    assert str(p) == "worker 0: epoch 1/3, step 25/100, 5.0 steps/s, ETA 15 s"
    p.update({"kind": "epoch_end", "epoch": 1, "t": 30.0, "logs": {"loss": 1.0}})
    assert p.step == 100 and p.eta == 0.0
    p.update({"kind": "epoch_begin", "epoch": 2, "t": 31.0})
    assert p.step == 0 and p.rate is None
    p.update({"kind": "train_end", "t": 40.0})
    assert p.finished


def test_event_points_are_named_like_kerass_tensorboard_scalars() -> None:
    seen: dict[int, int] = {}
    batch = event_points({"kind": "progress", "epoch": 2, "step": 3, "steps": 10, "t": 1.0,
                          "logs": {"loss": 0.5}}, seen)
    assert batch == [ScalarPoint("train", "batch_loss", 13, 1.0, 0.5)]
    epoch = event_points({"kind": "epoch_end", "epoch": 2, "t": 2.0,
                          "logs": {"loss": 0.4, "val_loss": 0.6, "val_accuracy": 0.9}}, seen)
    assert epoch == [ScalarPoint("train", "epoch_loss", 1, 2.0, 0.4),
                     ScalarPoint("validation", "epoch_loss", 1, 2.0, 0.6),
                     ScalarPoint("validation", "epoch_accuracy", 1, 2.0, 0.9)]
    # epoch length unknown: later epochs count on from the steps seen
    seen = {}
    event_points({"kind": "progress", "epoch": 1, "step": 7, "steps": None, "logs": {"l": 1}}, seen)
    (point,) = event_points({"kind": "progress", "epoch": 2, "step": 2, "steps": None,
                             "logs": {"l": 1}}, seen)
    assert point.step == 9
    assert event_points({"kind": "epoch_begin", "epoch": 1}, {}) == []


def _record(status: str = "running", error: str | None = None, **replica) -> JobRecord:
    fields = dict(state="running", exit_code=None, pid=1, restarts=0, log_path="/x",
                  address="127.0.0.1:1")
    fields.update(replica)
    replicas = tuple(ReplicaRecord("j1", "worker", i, **fields) for i in range(2))
    return JobRecord("j1", "digits", status, "local", {}, "/j", "/o", "/l", 0.0, error=error,
                     replicas=replicas)


def test_replica_rows_show_restarting_and_why_a_pending_one_cannot_start() -> None:
    rows = replica_rows(_record(state="pending", restarts=1))
    assert [r["state"] for r in rows] == ["restarting", "restarting"]
    rows = replica_rows(_record(state="pending", error="0/1 nodes have a free GPU"))
    assert rows[0]["diagnosis"] == "0/1 nodes have a free GPU"
    assert rows[1]["replica"] == "worker 1" and rows[1]["where"] == "127.0.0.1:1"


def _kube_record(error: str | None, status: str = "pending") -> JobRecord:
    """Two Kubernetes replicas: worker 0 bound to a node but its image will not pull,
    worker 1 not yet scheduled and without a problem of its own."""
    base = dict(exit_code=None, pid=None, restarts=0, log_path="/x", address="w.svc:2222")
    replicas = (
        ReplicaRecord("j1", "worker", 0, state="pending", pod="digits-j1-worker-0",
                      node="127.0.0.1", reason="ImagePull",
                      diagnosis="digits-j1-worker-0 cannot pull its image", **base),
        ReplicaRecord("j1", "worker", 1, state="pending", pod="digits-j1-worker-1", **base),
    )
    return JobRecord("j1", "digits", status, "kubernetes", {}, "/j", "/o", "/l", 0.0,
                     error=error, replicas=replicas)


def test_kubernetes_rows_show_pod_node_and_their_own_reason() -> None:
    rows = replica_rows(_kube_record(error="digits-j1-worker-0 cannot pull its image"))
    assert rows[0]["where"] == "digits-j1-worker-0 on 127.0.0.1"
    assert (rows[0]["pod"], rows[0]["node"]) == ("digits-j1-worker-0", "127.0.0.1")
    assert rows[0]["reason"] == "ImagePull"
    assert rows[0]["diagnosis"] == "digits-j1-worker-0 cannot pull its image"
    # not scheduled yet: the pod alone, and no neighbour's problem on its row
    assert rows[1]["where"] == "digits-j1-worker-1" and rows[1]["node"] is None
    assert "diagnosis" not in rows[1] and "reason" not in rows[1]
    json.dumps(rows)


def test_the_header_says_a_job_wide_reason_the_rows_do_not() -> None:
    own = "digits-j1-worker-0 cannot pull its image"
    assert job_header(_kube_record(error=own))["waiting"] is None  # the row says it
    wide = "The job needs 2 nvidia.com/gpu, 1 free (the cluster has 1 in all). " + own
    assert job_header(_kube_record(error=wide))["waiting"] == wide
    assert job_header(_kube_record(error=wide, status="failed"))["waiting"] is None
    # a local job's pending rows carry the job's error themselves: nothing to add
    assert job_header(_record(state="pending", status="pending", error="x"))["waiting"] is None


def test_a_row_of_a_local_replica_keeps_its_address() -> None:
    rows = replica_rows(_record())
    assert rows[0]["where"] == "127.0.0.1:1" and "pod" not in rows[0] and "node" not in rows[0]


def test_model_sends_small_deltas_and_a_full_snapshot() -> None:
    model = JobViewModel(chief="worker 0")
    model.set_record(_record())
    model.add_line(LogLine("worker 0", "Epoch 1/2"))
    model.add_line(LogLine("worker 1", "Epoch 1/2"))
    model.add_line(LogLine("worker 1", "  3/10 ━━━━ 1s - loss: 2"))  # half-drawn bar: dropped
    for replica in ("worker 0", "worker 1"):
        model.add_event(replica, {"kind": "epoch_begin", "epoch": 1, "epochs": 2, "steps": 10, "t": 0})
        model.add_event(replica, {"kind": "progress", "epoch": 1, "epochs": 2, "step": 5,
                                  "steps": 10, "t": 1.0, "logs": {"loss": 2.0}})
    delta = model.drain()
    assert [(e["text"], e["replicas"]) for e in delta["logs"]] == [("Epoch 1/2", ["worker 0", "worker 1"])]
    assert set(delta["progress"]) == {"worker 0", "worker 1"}
    assert delta["progress"]["worker 1"]["rate"] == 5.0
    assert delta["job"]["status"] == "running" and len(delta["replicas"]) == 2
    # only the chief's events make curve points (the workers' are the same, all-reduced)
    assert delta["curves"] == {"train/batch_loss": {"run": "train", "tag": "batch_loss",
                                                    "steps": [5], "values": [2.0]}}
    json.dumps(delta)  # what the widget sends must be JSON
    assert model.drain() == {}  # nothing new
    model.set_record(_record())  # same record: no job delta
    assert model.drain() == {}
    # a TensorBoard scalar from the relay comes first for its curve: events do not add to it
    model.add_point(ScalarPoint("train", "epoch_loss", 0, 3.0, 1.5))
    model.add_event("worker 0", {"kind": "epoch_end", "epoch": 1, "t": 3.0,
                                 "logs": {"loss": 1.4, "val_loss": 1.6}})
    delta = model.drain()
    assert delta["curves"]["train/epoch_loss"]["values"] == [1.5]
    assert delta["curves"]["validation/epoch_loss"]["values"] == [1.6]
    model.add_point(ScalarPoint("train", "epoch_loss", 1, 4.0, float("nan")))
    assert model.drain()["curves"]["train/epoch_loss"] == {"run": "train", "tag": "epoch_loss",
                                                           "steps": [1], "values": [None]}
    snap = model.snapshot()
    assert snap["curves"]["train/epoch_loss"]["steps"] == [0, 1]
    assert [e["text"] for e in snap["logs"]] == ["Epoch 1/2"]
    assert snap["progress"]["worker 0"]["step"] == 10
    assert "worker 0: epoch 1/2, step 10/10" in model.progress_text()


def test_merged_lines_list_replicas_in_their_natural_order() -> None:
    logs = LogDedup()
    for replica in ("worker 10", "worker 2", "chief", "ps 0"):
        entry, _ = logs.add(LogLine(replica, "same"), now=1.0)
    assert entry.replicas == ["chief", "worker 2", "worker 10", "ps 0"]


def test_a_delta_lists_entries_in_the_order_they_were_made() -> None:
    """Re-attaching replays two workers' logs, one ahead of the other: worker 1's copies
    merge into older entries within one delta. The browser appends ids it has not seen, so
    the delta must keep the order the entries were made: "tick 1" before "tick 10"."""
    model = JobViewModel(chief="worker 0")
    model.add_line(LogLine("worker 0", "tick 0"))
    model.add_line(LogLine("worker 1", "tick 0"))
    for i in range(1, 12):
        model.add_line(LogLine("worker 0", f"tick {i}"))
    for i in range(1, 6):
        model.add_line(LogLine("worker 1", f"tick {i}"))
    delta = model.drain()
    assert [e["text"] for e in delta["logs"]] == [f"tick {i}" for i in range(12)]
    assert [e["replicas"] for e in delta["logs"]][:7] == [["worker 0", "worker 1"]] * 6 + [["worker 0"]]
