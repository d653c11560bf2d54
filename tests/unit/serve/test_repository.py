"""The model repository without TensorFlow: versions, manifests, atomic stores, resolving
what ``cellship serve`` was given, finding the SavedModel a run produced, the CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cellship import cli
from cellship.errors import ExportError, ModelNotFound, UsageError
from cellship.serve import export as models

SIGNATURE = {"name": "serving_default", "method_name": "tensorflow/serving/predict",
             "inputs": [{"name": "image", "dtype": "DT_FLOAT", "shape": [-1, 8, 8, 1]}],
             "outputs": [{"name": "dense_1", "dtype": "DT_FLOAT", "shape": [-1, 10]}]}


def fake_saved_model(path: Path) -> Path:
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"not really a graph")
    (path / "variables" / "variables.index").write_bytes(b"")
    return path


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace the TensorFlow check with a recorder that accepts every model."""
    calls: list = []

    def fake_check(path: Path, example=None) -> dict:
        calls.append((path, example))
        result = {"signatures": {"serving_default": SIGNATURE}}
        if example is not None:
            result["example"] = {"verb": "predict", "response": {"predictions": [[0.1] * 10]}}
        return result

    monkeypatch.setattr(models, "check_saved_model", fake_check)
    return calls


def test_versions_increase_and_carry_a_manifest(tmp_path: Path, checked: list) -> None:
    src = fake_saved_model(tmp_path / "digits")
    first = models.export_saved_model(src, "digits", parameters={"EPOCHS": 2},
                                      metrics={"train/epoch_loss": 0.3})
    second = models.export_saved_model(src, "digits", example={"instances": [[1]]})
    assert (first.model.version, second.model.version) == (1, 2)
    assert first.model.path == models.root() / "digits" / "1"
    manifest = json.loads((first.model.path / models.MANIFEST).read_text())
    assert manifest["name"] == "digits" and manifest["version"] == 1
    assert manifest["parameters"] == {"EPOCHS": 2}
    assert manifest["metrics"] == {"train/epoch_loss": 0.3}
    assert manifest["signature"] == SIGNATURE
    assert manifest["source"] == {"kind": "saved_model", "path": str(src.resolve())}
    assert (second.model.path / "saved_model.pb").read_bytes() == b"not really a graph"
    example = json.loads((second.model.path / "cellship-example.json").read_text())
    assert example["request"] == {"instances": [[1]]} and example["response"]["predictions"]
    assert second.example_response == {"predictions": [[0.1] * 10]}
    assert not [p for p in (models.root() / "digits").iterdir() if p.name.startswith(".")]
    listed = models.list_models()
    assert [(m.name, m.version) for m in listed] == [("digits", 1), ("digits", 2)]
    assert models.get_model("digits").version == 2
    assert listed[0].describe_signature() == "image:float[?,8,8,1] -> dense_1:float[?,10]"


def test_a_version_taken_meanwhile_makes_the_export_take_the_next(tmp_path: Path, checked: list,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = fake_saved_model(tmp_path / "m")
    models.export_saved_model(src, "m")
    real = models.version_dirs
    stale = {"left": 1}

    def racing(base: Path) -> dict:
        found = real(base)
        if stale["left"] and base == models.root() / "m":
            stale["left"] -= 1
            fake_saved_model(base / "2")  # another export lands version 2 right now
            return found  # ...after we looked
        return found

    monkeypatch.setattr(models, "version_dirs", racing)
    result = models.export_saved_model(src, "m")
    assert result.model.version == 3
    assert (models.root() / "m" / "2" / "saved_model.pb").read_bytes() == b"not really a graph"
    assert json.loads((models.root() / "m" / "3" / models.MANIFEST).read_text())["version"] == 3


def test_nothing_is_stored_when_the_check_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path, example=None):
        raise ExportError("The model does not answer the example request")

    monkeypatch.setattr(models, "check_saved_model", refuse)
    with pytest.raises(ExportError, match="does not answer"):
        models.export_saved_model(fake_saved_model(tmp_path / "m"), "m", example={"instances": [1]})
    assert models.list_models() == []


def test_export_refuses_bad_names_and_non_savedmodels(tmp_path: Path, checked: list) -> None:
    with pytest.raises(UsageError, match="not usable in a URL"):
        models.export_saved_model(fake_saved_model(tmp_path / "m"), "../evil")
    with pytest.raises(ExportError, match="no saved_model.pb"):
        models.export_saved_model(tmp_path, "m")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="not JSON"):
        models.export_saved_model(tmp_path / "m", "m", example=bad)
    assert checked == []


def test_resolve_names_paths_and_version_directories(tmp_path: Path, checked: list,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    models.export_saved_model(fake_saved_model(tmp_path / "src"), "digits")
    assert models.resolve("digits") == ("digits", models.root() / "digits")
    bare = fake_saved_model(tmp_path / "my model")
    assert models.resolve(str(bare)) == ("my-model", bare.resolve())
    versions = tmp_path / "served"
    fake_saved_model(versions / "7")
    assert models.resolve(str(versions)) == ("served", versions.resolve())
    assert models.version_dirs(versions) == {7: versions / "7"}
    assert models.resolve(str(versions / "7")) == ("served", (versions / "7").resolve())
    assert models.version_dirs(versions / "7") == {7: versions / "7"}
    # a bare name means the repository's model even when a same-named directory is here
    monkeypatch.chdir(tmp_path)
    fake_saved_model(tmp_path / "digits")
    assert models.resolve("digits")[1] == models.root() / "digits"
    assert models.resolve("./digits")[1] == (tmp_path / "digits").resolve()


def test_resolve_says_what_exists_when_nothing_matches(tmp_path: Path, checked: list) -> None:
    with pytest.raises(ModelNotFound, match="No model has been exported yet"):
        models.resolve("digits")
    models.export_saved_model(fake_saved_model(tmp_path / "src"), "iris")
    with pytest.raises(ModelNotFound, match="Models here: iris"):
        models.resolve("digits")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="neither a SavedModel"):
        models.resolve(str(tmp_path / "empty"))
    with pytest.raises(ModelNotFound, match="no version 9"):
        models.get_model("iris", 9)


def test_find_saved_models_sees_only_fresh_ones_and_skips_noise(tmp_path: Path) -> None:
    old = fake_saved_model(tmp_path / "old_model")
    past = time.time() - 3600
    os.utime(old / "saved_model.pb", (past, past))
    since = time.time() - 5
    fresh = fake_saved_model(tmp_path / "out" / "digits")
    fake_saved_model(tmp_path / ".hidden" / "m")
    fake_saved_model(tmp_path / "node_modules" / "m")
    found, truncated = models.find_saved_models(tmp_path, since=since)
    assert found == [fresh] and not truncated
    assert sorted(models.find_saved_models(tmp_path)[0]) == sorted([fresh, old])


def test_choose_takes_the_newest_or_the_one_named(tmp_path: Path) -> None:
    a = fake_saved_model(tmp_path / "a")
    b = fake_saved_model(tmp_path / "b")
    os.utime(a / "saved_model.pb", (time.time() - 100, time.time() - 100))
    assert models.choose([a, b], None, "here") == b
    assert models.choose([a, b], "a", "here") == a
    assert models.choose([a, b], str(a), "here") == a
    with pytest.raises(ExportError, match="matches none") as info:
        models.choose([a, b], "c", "the notebook produced")
    assert str(a) in str(info.value) and str(b) in str(info.value)


# -- the commands ------------------------------------------------------------------------------------
def test_cli_models_lists_versions(tmp_path: Path, checked: list, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["models"]) == 0
    assert "no models yet" in capsys.readouterr().out
    models.export_saved_model(fake_saved_model(tmp_path / "src"), "digits", metrics={"acc": 0.91})
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "image:float[?,8,8,1]" in out and "acc=0.91" in out
    assert cli.main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["name"] == "digits" and data[0]["version"] == 1 and data[0]["metrics"] == {"acc": 0.91}
    assert cli.main(["models", "nope"]) == 1
    assert "No model named 'nope'" in capsys.readouterr().err


def test_cli_export_of_a_savedmodel_directory(tmp_path: Path, checked: list,
                                              capsys: pytest.CaptureFixture) -> None:
    src = fake_saved_model(tmp_path / "digits")
    assert cli.main(["export", str(src)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(models.root() / "digits" / "1")
    assert "exported digits version 1" in captured.err and "cellship serve digits" in captured.err


@pytest.mark.parametrize("argv, words", [
    (["export"], "Give a NOTEBOOK to run, or --job JOB"),
    (["export", "nb.ipynb", "--job", "abc"], "one of them"),
    (["export", "--job", "abc", "-p", "a", "1"], "-p sets notebook parameters"),
    (["export", "--job", "nope"], "nope"),
    (["serve", "nope"], "No model named 'nope'"),
])
def test_cli_usage_errors_say_what_to_do(argv: list[str], words: str,
                                         capsys: pytest.CaptureFixture) -> None:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellship: error:") and words in err and "Traceback" not in err


def test_repository_and_server_modules_do_not_import_tensorflow() -> None:
    """Only loading a model imports TensorFlow: the CLI, exports and a Jupyter server stay light."""
    import subprocess
    import sys

    code = ("import json, sys\n"
            "import cellship.serve.export, cellship.cli.serve, cellship.serve.codec\n"
            "import cellship.serve.batching, cellship.serve.repository, cellship.serve.server\n"
            "import cellship.serve.prometheus, cellship.serve.check, cellship.serve.process\n"
            "print(json.dumps(sorted(m for m in ('tensorflow', 'keras', 'IPython') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
