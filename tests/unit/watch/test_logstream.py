"""cellship.watch.logstream: turning growing replica log files into clean lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellship.watch.logstream import (
    LogLine,
    collapse,
    follow_files,
    is_tf_noise,
    last_error_line,
    traceback_tail,
)

# Lines TensorFlow 2.21's C++ runtime really writes to stderr.
TF_INFO = ("I0000 00:00:1795613920.270057    3322 port.cc:153] oneDNN custom operations are on. "
           "You may see slightly different numerical results due to floating-point round-off "
           "errors from different computation orders.")
TF_WARNING = ("W0000 00:00:1795613924.335422    3322 dataset.cc:997] Input of "
              "GeneratorDatasetOp::Dataset will not be optimized because the dataset does not "
              "implement the AsGraphDefInternal() method needed to apply optimizations.")
TF_ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
TF_GLOG = "W1125 13:41:02.123456 3322 tensorflow/core/framework/op_kernel.cc:1840] shape hint"
TF_ERROR = ("E0000 00:00:1795613930.100000    3322 collective_ops.cc:123] Collective ops is "
            "aborted by: failed to connect to all addresses")


def keras_progbar(*states: str) -> str:
    """What Keras's Progbar writes on one line: each update erases the previous one with
    backspaces, then returns the carriage."""
    out, previous = "", 0
    for state in states:
        if previous:
            out += "\b" * previous + "\r"
        out += state
        previous = len(state)
    return out


# -- collapse ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("plain line", "plain line"),
    ("10%\r50%\r100%", "100%"),
    ("10%\r100%\r", "100%"),             # a trailing carriage return keeps the last state
    ("done\r\n".rstrip("\n"), "done"),    # CRLF line endings
    ("abc\b\bX", "aX"),
    ("\b\bstart", "start"),              # backspace at the start of a line does nothing
    ("\r\r", ""),
    ("trailing spaces   ", "trailing spaces"),
])
def test_collapse(raw, shown):
    assert collapse(raw) == shown


def test_collapse_keras_progbar():
    raw = keras_progbar("1/3 [=========>....................] - ETA: 1s - loss: 2.30",
                        "2/3 [===================>..........] - ETA: 0s - loss: 1.90",
                        "3/3 [==============================] - 1s 10ms/step - loss: 1.50")
    assert "\b" in raw and "\r" in raw
    assert collapse(raw) == "3/3 [==============================] - 1s 10ms/step - loss: 1.50"


def test_collapse_keras_progbar_where_the_last_state_is_shorter():
    raw = keras_progbar("1/2 [=====>.....] - ETA: 10s - loss: 0.123456", "2/2 [====] - 1s")
    assert collapse(raw) == "2/2 [====] - 1s"


# -- TF noise ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [TF_INFO, TF_WARNING, TF_ABSL, TF_GLOG,
                                  "I0000 00:00:1795614158.520603    6993 cpu_feature_guard.cc:227] "
                                  "This TensorFlow binary is optimized",
                                  "To enable the following instructions: AVX2 AVX512F FMA, in other "
                                  "operations, rebuild TensorFlow with the appropriate compiler flags."])
def test_tf_noise(line):
    assert is_tf_noise(line)


@pytest.mark.parametrize("line", [TF_ERROR, "Epoch 1/3", "INFO: model saved", "WARNING: low disk",
                                  "Traceback (most recent call last):",
                                  "ValueError: bad shape", "I am training", "W0 done", ""])
def test_not_tf_noise(line):
    assert not is_tf_noise(line)


# -- follow_files ----------------------------------------------------------------------------

def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_follow_files_emits_only_complete_lines_until_the_end(tmp_path):
    log = tmp_path / "worker-0.log"
    steps = [b"one\npar", b"tial\ntwo", b" end", None]  # None: the job is done
    calls = {"n": 0}

    def is_done() -> bool:
        step = steps[calls["n"]]
        calls["n"] += 1
        if step is None:
            return True
        _append(log, step)
        return False

    got = [(calls["n"], line) for line in follow_files([("worker 0", str(log))], is_done, poll=0.001)]
    assert got == [(1, LogLine("worker 0", "one")),
                   (2, LogLine("worker 0", "partial")),
                   (4, LogLine("worker 0", "two end"))]  # the unfinished line, at the end only


def test_follow_files_several_files_and_a_file_that_appears_later(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"a1\n")
    steps = [lambda: None, lambda: b.write_bytes(b"b1\n"), lambda: _append(a, b"a2\n")]
    calls = {"n": 0}

    def is_done() -> bool:
        if calls["n"] == len(steps):
            return True
        steps[calls["n"]]()
        calls["n"] += 1
        return False

    lines = list(follow_files([("worker 0", str(a)), ("worker 1", str(b))], is_done, poll=0.001))
    assert [str(line) for line in lines] == ["[worker 0] a1", "[worker 1] b1", "[worker 0] a2"]


def test_follow_files_keeps_multibyte_characters_split_across_writes(tmp_path):
    log = tmp_path / "w.log"
    text = "café ✓\n".encode()
    steps = [text[:4], text[4:8], text[8:]]
    calls = {"n": 0}

    def is_done() -> bool:
        if calls["n"] == len(steps):
            return True
        _append(log, steps[calls["n"]])
        calls["n"] += 1
        return False

    assert [line.text for line in follow_files([("w", str(log))], is_done, poll=0.001)] == ["café ✓"]


def test_follow_files_without_follow_reads_what_is_there(tmp_path):
    log = tmp_path / "w.log"
    log.write_bytes(keras_progbar("1/2 [==>..]", "2/2 [=====]").encode() + b"\n\n"
                    b"windows line\r\nno newline at the end")
    lines = list(follow_files([("chief", str(log))], lambda: pytest.fail("is_done called"),
                              follow=False))
    assert [line.text for line in lines] == ["2/2 [=====]", "windows line", "no newline at the end"]
    assert all(line.replica == "chief" for line in lines)


def test_follow_files_hides_tf_noise_unless_asked(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("\n".join([TF_ABSL, TF_INFO, "Epoch 1/2", TF_WARNING, TF_ERROR, "loss: 0.5"])
                   + "\n")
    quiet = [line.text for line in follow_files([("w", str(log))], lambda: True, follow=False)]
    assert quiet == ["Epoch 1/2", TF_ERROR, "loss: 0.5"]
    loud = [line.text for line in follow_files([("w", str(log))], lambda: True, follow=False,
                                               tf_noise=True)]
    assert loud == [TF_ABSL, TF_INFO, "Epoch 1/2", TF_WARNING, TF_ERROR, "loss: 0.5"]


def test_follow_files_missing_file_yields_nothing(tmp_path):
    assert list(follow_files([("w", str(tmp_path / "nope.log"))], lambda: True, follow=False)) == []


# -- errors in logs --------------------------------------------------------------------------

TRACEBACK_LOG = """\
Epoch 1/2
loss: 0.9
Traceback (most recent call last):
  File "/jobs/abc/program.py", line 12, in <module>
    model.fit(x, y)
  File "/venv/lib/python3.11/site-packages/keras/trainer.py", line 99, in fit
    raise ValueError("Input 0 is incompatible with the layer: expected shape (None, 64)")
ValueError: Input 0 is incompatible with the layer: expected shape (None, 64)
"""


def test_last_error_line_and_traceback_tail(tmp_path):
    log = tmp_path / "worker-0.log"
    log.write_text(TRACEBACK_LOG)
    assert last_error_line(str(log)) == ("ValueError: Input 0 is incompatible with the layer: "
                                         "expected shape (None, 64)")
    tail = traceback_tail(str(log))
    assert tail.splitlines()[0] == "Traceback (most recent call last):"
    assert tail.splitlines()[-1].startswith("ValueError: Input 0")
    assert "Epoch 1/2" not in tail
    assert 'File "/jobs/abc/program.py", line 12' in tail


def test_error_line_with_dotted_exception_name(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
                   "tensorflow.python.framework.errors_impl.UnavailableError: peer is gone\n"
                   + TF_INFO + "\n")
    assert last_error_line(str(log)) == ("tensorflow.python.framework.errors_impl.UnavailableError:"
                                         " peer is gone")


def test_traceback_tail_is_the_last_traceback(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("Traceback (most recent call last):\n  File \"a\", line 1\nKeyError: 'first'\n"
                   "retrying\n"
                   "Traceback (most recent call last):\n  File \"b\", line 2\nRuntimeError: second\n")
    assert traceback_tail(str(log)) == ("Traceback (most recent call last):\n  File \"b\", line 2\n"
                                        "RuntimeError: second")
    assert last_error_line(str(log)) == "RuntimeError: second"


def test_traceback_tail_is_shortened(tmp_path):
    log = tmp_path / "w.log"
    frames = "".join(f"  File \"f{i}.py\", line {i}, in g\n    g()\n" for i in range(100))
    log.write_text("Traceback (most recent call last):\n" + frames + "RecursionError: too deep\n")
    tail = traceback_tail(str(log), max_lines=10).splitlines()
    assert len(tail) == 10
    assert tail[0] == "Traceback (most recent call last):"
    assert tail[3] == "  ..."
    assert tail[-1] == "RecursionError: too deep"


def test_no_traceback(tmp_path):
    log = tmp_path / "w.log"
    log.write_text("ValueError: printed by the user, not raised\nall good\n")
    assert last_error_line(str(log)) is None
    assert traceback_tail(str(log)) is None
    assert last_error_line(str(tmp_path / "missing.log")) is None
    assert traceback_tail(str(tmp_path / "missing.log")) is None
