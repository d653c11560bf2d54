"""TF Serving's batching parameters file, read by protobuf's text-format parser into the
batcher's knobs; mistakes are named with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellship.errors import UsageError
from cellship.serve.batching import BatchingConfig
from cellship.serve.batching_file import parse_batching_parameters, read_batching_parameters

# As in TF Serving's docs (serving/tensorflow_serving/batching/README.md), with a comment.
TF_SERVING_EXAMPLE = """
# from the TF Serving batching guide
max_batch_size { value: 128 }
batch_timeout_micros { value: 500 }
max_enqueued_batches { value: 1000000 }
num_batch_threads { value: 8 }
allowed_batch_sizes: 32
allowed_batch_sizes: 64
allowed_batch_sizes: 128
"""


def test_tf_serving_names_become_the_batchers_knobs() -> None:
    config, ignored = parse_batching_parameters(TF_SERVING_EXAMPLE)
    assert config == BatchingConfig(max_batch_size=128, max_wait_ms=0.5, max_queue_rows=128_000_000,
                                    batch_threads=8, allowed_batch_sizes=(32, 64, 128))
    assert ignored == []
    assert [config.padded(n) for n in (1, 32, 33, 128, 129)] == [32, 32, 64, 128, 129]


def test_unset_fields_keep_the_defaults_and_unused_ones_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 16 }\npad_variable_length_inputs: true\n"
                    "thread_pool_name { value: 'pool' }\n")
    config, ignored = read_batching_parameters(path)
    assert (config.max_batch_size, config.max_wait_ms, config.batch_threads) == (16, 0.5, 1)
    assert config.allowed_batch_sizes == ()
    assert ignored == ["thread_pool_name", "pad_variable_length_inputs"]


@pytest.mark.parametrize("text, words", [
    ("max_batch_size: 8", ["not a TF Serving BatchingParameters text proto", "max_batch_size { value: 32 }"]),
    ("max_batch_sise { value: 8 }", ["max_batch_sise"]),
    ("max_batch_size { value: 8 }\nallowed_batch_sizes: 4", ["must equal max_batch_size (8)"]),
    ("max_batch_size { value: 8 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 4", ["increasing"]),
    ("max_batch_size { value: 0 }", ["--max-batch-size must be >= 1"]),
])
def test_mistakes_are_named(text: str, words: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        parse_batching_parameters(text, "params.txt")
    for word in words:
        assert word in str(info.value), str(info.value)


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Cannot read the batching parameters file .*nope.txt"):
        read_batching_parameters(tmp_path / "nope.txt")
