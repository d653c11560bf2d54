"""``cellship export`` end to end: a notebook executed by papermill that trains and saves a
plain Keras model, a notebook that saves nothing, and a finished job's output."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

import cellship
from cellship import cli
from cellship.errors import ExportError
from cellship.serve import export as models

pytestmark = [pytest.mark.serving, pytest.mark.kernel]

TRAIN_CELL = """
import numpy as np
import tf_keras
from sklearn.datasets import load_digits
import cellship

images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
model = tf_keras.Sequential([tf_keras.Input((8, 8, 1), name="image"), tf_keras.layers.Flatten(),
                             tf_keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(images, labels, epochs=EPOCHS, batch_size=64, verbose=0)
cellship.record("accuracy", float(history.history["accuracy"][-1]))
model.save("saved/digits_plain", save_format="tf")
"""

JOB = """
import tf_keras
from sklearn.datasets import load_digits
import cellship

images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
model = tf_keras.Sequential([tf_keras.Input((8, 8, 1), name="image"), tf_keras.layers.Flatten(),
                             tf_keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(images, labels, epochs=2, batch_size=64, verbose=2, callbacks=[cellship.job.tensorboard()])
cellship.job.save(model, "digits")
"""


def notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def one_digit() -> dict:
    return {"instances": [[[[0.5]] * 8] * 8]}


def test_export_runs_the_notebook_and_stores_what_it_saved(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    nb = notebook(tmp_path / "train.ipynb", TRAIN_CELL, parameters="EPOCHS = 1")
    (tmp_path / "request.json").write_text(json.dumps(one_digit()))
    code = cli.main(["export", str(nb), "--name", "digits-plain", "-p", "EPOCHS", "3",
                     "--example", str(tmp_path / "request.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stored = models.get_model("digits-plain")
    assert stored.version == 1 and captured.out.strip() == str(stored.path)
    manifest = stored.manifest
    assert manifest["source"]["kind"] == "notebook" and manifest["source"]["path"] == str(nb.resolve())
    assert manifest["parameters"] == {"EPOCHS": 3}
    assert 0.0 < manifest["metrics"]["accuracy"] <= 1.0
    assert manifest["signature"]["inputs"] == [{"name": "image", "dtype": "DT_FLOAT",
                                                "shape": [-1, 8, 8, 1]}]
    assert manifest["saved_model"] == str((tmp_path / "saved" / "digits_plain").resolve())
    example = json.loads((stored.path / "cellship-example.json").read_text())
    assert len(example["response"]["predictions"][0]) == 10
    assert "exported digits-plain version 1" in captured.err
    # the batch that ran it is on record, with the executed notebook
    executed = Path(manifest["source"]["executed_notebook"])
    assert executed.is_file() and cellship.get_batch(manifest["source"]["batch"]).status == "succeeded"


def test_a_notebook_that_saves_nothing_says_where_export_looked(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "nothing.ipynb", "x = 1 + 1")
    with pytest.raises(ExportError) as info:
        models.export_notebook(nb, "nothing")
    message = str(info.value)
    assert "produced no SavedModel" in message and str(tmp_path) in message
    assert "jobs it submitted (none)" in message and "cellship.job.save" in message
    assert models.list_models() == []


def test_export_of_a_finished_jobs_savedmodel(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(JOB)
    job = cellship.submit_script(script, name="digits-job")
    record = job.wait(timeout=180)
    assert record.status == "succeeded", job.failure_report()
    result = models.export_job(job.id, example=one_digit())
    assert (result.model.name, result.model.version) == ("digits", 1)  # named after the SavedModel
    manifest = result.model.manifest
    assert manifest["source"]["kind"] == "job" and manifest["source"]["job_id"] == job.id
    assert any(key.endswith("epoch_loss") for key in manifest["metrics"])
    assert len(result.example_response["predictions"][0]) == 10
    with pytest.raises(ExportError, match="matches none"):
        models.export_job(job.id, "other", model_dir="nope")
