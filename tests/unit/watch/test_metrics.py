"""Scalar points: the log-stream relay, the buffer behind live plots, and decimation."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from cellship.watch.metrics import (
    RELAY_MARK,
    MetricsBuffer,
    ScalarPoint,
    decode_relay,
    downsample,
    encode_relay,
    is_relay,
)


def point(step: int, value: float, run: str = "train", tag: str = "epoch_loss",
          wall_time: float | None = None) -> ScalarPoint:
    return ScalarPoint(run=run, tag=tag, step=step,
                       wall_time=1000.0 + step if wall_time is None else wall_time, value=value)


# -- relay -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0.1234, -3.0, 1e-300, float("inf"), float("-inf")])
def test_relay_round_trip(value: float):
    original = ScalarPoint(run="validation", tag="epoch_accuracy", step=12,
                           wall_time=1795614866.644699, value=value)
    line = encode_relay(original)
    assert line.startswith(RELAY_MARK) and "\n" not in line and "\r" not in line
    assert decode_relay(line) == original
    assert decode_relay(line + "\n") == original


def test_relay_carries_nan():
    decoded = decode_relay(encode_relay(point(3, float("nan"))))
    assert decoded is not None and math.isnan(decoded.value) and decoded.step == 3


def test_relay_survives_odd_names():
    original = point(1, 0.5, run="sweep/lr=0.1 \u00e9", tag='with "quotes"\nand newline')
    line = encode_relay(original)
    assert "\n" not in line
    assert decode_relay(line) == original


def test_relay_after_a_progress_bar_carriage_return():
    line = encode_relay(point(1, 0.5))
    assert decode_relay("\r" + line) == point(1, 0.5)
    assert is_relay("\r" + line) and not is_relay("Epoch 1/3")


@pytest.mark.parametrize("line", [
    "Epoch 1/3",
    "",
    "cellship-metric {}",                                   # no record separator
    RELAY_MARK,
    RELAY_MARK + "{not json",
    RELAY_MARK + "[1, 2]",
    RELAY_MARK + '{"run": "t", "tag": "x", "step": 1, "wall_time": 1.0}',   # no value
    RELAY_MARK + '{"run": "t", "tag": "x", "step": true, "wall_time": 1.0, "value": 1}',
    RELAY_MARK + '{"run": "t", "tag": "x", "step": 1.5, "wall_time": 1.0, "value": 1}',
    RELAY_MARK + '{"run": "t", "tag": "x", "step": 1, "wall_time": 1.0, "value": "1"}',
    RELAY_MARK + '{"run": 1, "tag": "x", "step": 1, "wall_time": 1.0, "value": 1}',
    RELAY_MARK + '{"run": "t", "tag": "x", "step": 1, "wall_time": NaN, "value": 1}',
    RELAY_MARK + "[" * 100000,                              # deep nesting
    "[worker 0] " + RELAY_MARK + '{"run":"t","tag":"x","step":1,"wall_time":1.0,"value":1}',
])
def test_malformed_relay_lines_are_not_points(line: str):
    assert decode_relay(line) is None


def test_relay_accepts_integer_values():
    line = RELAY_MARK + '{"run":"t","tag":"x","step":1,"wall_time":2,"value":3}'
    assert decode_relay(line) == ScalarPoint("t", "x", 1, 2.0, 3.0)


# -- buffer ------------------------------------------------------------------------------
def test_buffer_groups_points_by_run_and_tag():
    buffer = MetricsBuffer()
    assert len(buffer) == 0 and buffer.tags() == [] and buffer.last_values() == {}
    version = buffer.version
    assert buffer.add([]) == 0 and buffer.version == version
    added = buffer.add([point(0, 1.0), point(0, 2.0, run="validation"),
                        point(0, 0.3, tag="epoch_accuracy"), point(1, 0.5)])
    assert added == 4 and len(buffer) == 4 and buffer.version != version
    assert buffer.tags() == ["epoch_accuracy", "epoch_loss"]
    assert buffer.runs("epoch_loss") == ["train", "validation"]
    assert buffer.runs("epoch_accuracy") == ["train"]
    assert buffer.runs() == ["train", "validation"]
    steps, values = buffer.series("train", "epoch_loss")
    assert steps.tolist() == [0, 1] and values.tolist() == [1.0, 0.5]
    assert steps.dtype == np.int64 and values.dtype == np.float64
    empty_steps, empty_values = buffer.series("nope", "epoch_loss")
    assert len(empty_steps) == 0 and len(empty_values) == 0


def test_series_are_ordered_by_step_and_independent_copies():
    buffer = MetricsBuffer()
    buffer.add([point(0, 1.0), point(2, 0.5), point(1, 0.7)])  # e.g. after a restart
    steps, values = buffer.series("train", "epoch_loss")
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [1.0, 0.7, 0.5]
    values[:] = 0
    assert buffer.series("train", "epoch_loss")[1].tolist() == [1.0, 0.7, 0.5]


def test_dataframe_has_the_documented_columns():
    buffer = MetricsBuffer()
    assert list(buffer.to_dataframe().columns) == ["step", "wall_time", "run", "tag", "value"]
    assert len(buffer.to_dataframe()) == 0
    buffer.add([point(0, 1.0), point(0, 2.0, run="validation"), point(1, 0.5)])
    frame = buffer.to_dataframe()
    assert list(frame.columns) == ["step", "wall_time", "run", "tag", "value"]
    assert len(frame) == 3
    train = frame[frame["run"] == "train"]
    assert train["step"].tolist() == [0, 1] and train["value"].tolist() == [1.0, 0.5]
    assert train["wall_time"].tolist() == [1000.0, 1001.0]
    assert set(frame["tag"]) == {"epoch_loss"}
    assert frame.loc[frame["run"] == "validation", "value"].tolist() == [2.0]


def test_last_values_take_the_highest_step_then_the_latest_write():
    buffer = MetricsBuffer()
    buffer.add([point(5, 0.5), point(3, 0.9),                      # 5 stays the latest
                point(2, 0.1, run="validation", wall_time=10.0),
                point(2, 0.2, run="validation", wall_time=12.0),
                point(2, 0.3, run="validation", wall_time=11.0)])
    buffer.add([point(4, 0.7)])
    buffer.add([point(2, 0.4, run="validation", wall_time=11.5)])  # older write, same step
    assert buffer.last_values() == {
        "train/epoch_loss": {"step": 5, "value": 0.5, "wall_time": 1005.0},
        "validation/epoch_loss": {"step": 2, "value": 0.2, "wall_time": 12.0},
    }


def test_buffer_keeps_100k_points_per_tag_compactly():
    buffer = MetricsBuffer()
    points = [point(i, 1.0 / (i + 1)) for i in range(100_000)]
    for chunk in range(0, len(points), 1000):                   # arriving poll by poll
        buffer.add(points[chunk:chunk + 1000])
    for tag in ("t1", "t2"):
        buffer.extend("train", tag, np.arange(100_000), np.ones(100_000))
    assert len(buffer) == 300_000
    steps, values = buffer.series("train", "epoch_loss")
    assert len(steps) == 100_000 and steps[-1] == 99_999 and values[-1] == 1e-5
    held = sum(s.steps.nbytes + s.wall_times.nbytes + s.values.nbytes
               for s in buffer._series.values())
    assert held < 300_000 * 24 * 2.2  # 24 bytes a point, at most doubled by growth


def test_bulk_extend():
    buffer = MetricsBuffer()
    buffer.add([point(0, 1.0)])
    version = buffer.version
    assert buffer.extend("train", "epoch_loss", [1, 2], [0.5, 0.25], [5.0, 6.0]) == 2
    assert buffer.version != version and len(buffer) == 3
    assert buffer.series("train", "epoch_loss")[1].tolist() == [1.0, 0.5, 0.25]
    assert buffer.last_values()["train/epoch_loss"] == {"step": 2, "value": 0.25,
                                                       "wall_time": 6.0}
    before = time.time()
    buffer.extend("validation", "epoch_loss", [0], [2.0])
    assert buffer.last_values()["validation/epoch_loss"]["wall_time"] >= before
    version = buffer.version
    assert buffer.extend("train", "epoch_loss", [], []) == 0 and buffer.version == version
    with pytest.raises(ValueError, match="differ in length"):
        buffer.extend("train", "epoch_loss", [1, 2], [0.5])


# -- downsampling ------------------------------------------------------------------------
def test_small_series_are_returned_unchanged():
    steps, values = np.arange(10), np.linspace(0, 1, 10)
    out_steps, out_values = downsample(steps, values, 10)
    assert out_steps is steps and out_values is values


def test_downsample_keeps_endpoints_and_extremes():
    n = 100_000
    steps = np.arange(n) * 10
    values = np.sin(np.arange(n) / 5000.0)
    values[31_337] = 50.0       # a loss spike
    values[77_777] = -50.0      # and a dip
    values[60_000] = np.nan     # a diverged step shows as a gap
    out_steps, out_values = downsample(steps, values, 1000)
    assert 2 < len(out_steps) <= 1000
    assert out_steps[0] == 0 and out_steps[-1] == (n - 1) * 10
    assert out_values[0] == values[0] and out_values[-1] == values[-1]
    assert 313_370 in out_steps.tolist() and np.nanmax(out_values) == 50.0
    assert 777_770 in out_steps.tolist() and np.nanmin(out_values) == -50.0
    assert np.isnan(out_values).any()
    assert np.all(np.diff(out_steps) > 0)                      # order kept, no duplicates
    index = out_steps // 10
    assert np.array_equal(out_values, values[index], equal_nan=True)  # real points only


def test_downsample_keeps_the_envelope_of_noise():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50_001)
    out_steps, out_values = downsample(np.arange(len(values)), values, 500)
    assert len(out_values) <= 500
    assert out_values.max() == values.max() and out_values.min() == values.min()


@pytest.mark.parametrize("n, limit", [(3, 2), (5, 4), (1001, 1000), (7, 5), (100, 3)])
def test_downsample_limits(n: int, limit: int):
    steps = np.arange(n)
    out_steps, out_values = downsample(steps, steps * 2.0, limit)
    assert len(out_steps) <= limit
    assert out_steps[0] == 0 and out_steps[-1] == n - 1
    assert np.array_equal(out_values, out_steps * 2.0)


def test_constant_series_keeps_few_points():
    out_steps, _ = downsample(np.arange(10_000), np.ones(10_000), 100)
    assert out_steps[0] == 0 and out_steps[-1] == 9999 and len(out_steps) <= 100


def test_downsample_of_100k_noisy_points_keeps_ends_and_extremes():
    """What the chart draws of a long noisy curve (its speed is benchmarks/plot_update.py's)."""
    steps = np.arange(100_000)
    values = np.random.default_rng(1).normal(size=100_000)
    out_steps, out_values = downsample(steps, values, 2000)
    assert len(out_steps) <= 2000 and np.all(np.diff(out_steps) > 0)
    assert out_steps[0] == 0 and out_steps[-1] == 99_999
    assert out_values.min() == values.min() and out_values.max() == values.max()
    assert np.array_equal(out_values, values[out_steps])  # real points, never averaged
