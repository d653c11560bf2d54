"""The bootstrap's Keras callback: a fresh interpreter imports Keras after the hook is
installed, fits a tiny model on sklearn's digits, and its stdout carries the progress
events the job view is built from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cellship.inside.relay import decode_event, is_relay
from tests.conftest import REPO

pytestmark = [pytest.mark.tf]

PROGRAM = """
import sys
sys.path.insert(0, {backend!r})
from cellship.inside import bootstrap
bootstrap._hook_keras()
import numpy as np
from sklearn.datasets import load_digits
import keras
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[:1200], y[:1200], epochs=2, batch_size=100, validation_data=(x[1200:], y[1200:]))
model.fit(x[:200], y[:200], epochs=1, batch_size=100, verbose=0, callbacks=[])
"""


def test_fit_sends_progress_events_and_prints_one_line_per_epoch() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", PROGRAM.format(backend=str(REPO / "backend"))],
                         capture_output=True, text=True, timeout=180, env=env, check=True).stdout
    # split("\n"), not splitlines(): the marks begin with \x1e, a line break to str.splitlines
    events = [e for e in (decode_event(line) for line in out.split("\n")) if e is not None]
    kinds = [e["kind"] for e in events]
    # first fit: train_begin, 2 x (epoch_begin, progress..., epoch_end), train_end
    assert kinds[0] == "train_begin" and kinds.count("train_begin") == 2
    assert kinds.count("epoch_end") == 3
    first = events[:kinds.index("train_end") + 1]
    assert first[0]["epochs"] == 2 and first[0]["steps"] == 12
    progress = [e for e in first if e["kind"] == "progress"]
    assert progress[-1]["step"] == 12 and progress[-1]["epoch"] == 2  # the last step is always sent
    assert all(0 < e["step"] <= 12 for e in progress) and "loss" in progress[-1]["logs"]
    ends = [e for e in first if e["kind"] == "epoch_end"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(ends[-1]["logs"])
    assert 0.0 <= ends[-1]["logs"]["val_accuracy"] <= 1.0
    text = [line for line in out.split("\n") if line.strip() and not is_relay(line)]
    # verbose=2 unless chosen: one line per epoch, no half-drawn bars cut by event lines
    assert [line for line in text if line.startswith("Epoch ")] == ["Epoch 1/2", "Epoch 2/2"]
    assert len([line for line in text if line.startswith("12/12 - ")]) == 2
    assert not any("━" in line for line in text)
