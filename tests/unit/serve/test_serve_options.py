"""`cellship serve`'s production options are checked before TensorFlow is imported: TF
Serving's batching flags, the size limit, the time limits; mistakes say what to change."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cellship.cli.main import main
from cellship.cli.serve import _batching, add_serving_commands
from cellship.errors import UsageError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serving_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", "m", *argv])


def test_tf_serving_batching_flags(tmp_path: Path) -> None:
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 16 }\nallowed_batch_sizes: 16\nnum_batch_threads { value: 3 }\n")
    config = _batching(parse("--enable_batching", "--batching_parameters_file", str(params)))
    assert (config.max_batch_size, config.allowed_batch_sizes, config.batch_threads) == (16, (16,), 3)
    assert _batching(parse("--enable_batching=false")).max_batch_size == 1
    assert _batching(parse("--max-batch-size", "8")).max_batch_size == 8
    with pytest.raises(UsageError, match="takes true or false"):
        _batching(parse("--enable_batching=maybe"))
    with pytest.raises(UsageError, match="drop one of them"):
        _batching(parse("--enable_batching=false", "--batching_parameters_file", str(params)))


@pytest.mark.parametrize("argv, words", [
    (["--request-timeout", "-1"], "--request-timeout must be >= 0"),
    (["--drain-grace", "-2"], "--drain-grace must be >= 0"),
    (["--max-request-bytes", "0"], "--max-request-bytes must be > 0"),
])
def test_bad_values_are_usage_errors(tmp_path: Path, capsys, argv: list[str], words: str) -> None:
    model = tmp_path / "m" / "1"
    model.mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"")
    assert main(["serve", str(tmp_path / "m"), *argv]) != 0
    assert words in capsys.readouterr().err


def test_without_grpcio_the_grpc_port_says_so_and_rest_serves(monkeypatch) -> None:
    # An image or venv made without grpcio: the gRPC port is off with a sentence, not a crash.
    import asyncio
    import sys

    from cellship.errors import MissingDependency
    from cellship.serve.grpc_server import start_grpc

    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc -> ImportError
    with pytest.raises(MissingDependency, match="grpcio is not installed"):
        asyncio.run(start_grpc(object(), "127.0.0.1", 0))  # type: ignore[arg-type]
