"""The release commands' refusals are sentences, never tracebacks."""

from __future__ import annotations

from cellship.cli.main import main


def test_a_broken_gate_is_refused_before_anything_runs(capsys, tmp_path):
    assert main(["release", str(tmp_path / "nb.ipynb"), "--model", "digits",
                 "--gate", "accuracy >= 0.9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellship: error: The gate 'accuracy >= 0.9' is not understood: a gate is")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_kubernetes_is_not_built_yet(capsys, tmp_path):
    assert main(["release", str(tmp_path / "nb.ipynb"), "--model", "digits",
                 "--to", "kubernetes"]) == 1
    assert "--to kubernetes is not built yet" in capsys.readouterr().err


def test_releases_of_an_unreleased_model_and_a_rollback_with_nothing_to_go_back_to(capsys):
    assert main(["releases", "digits"]) == 0
    assert capsys.readouterr().out.strip() == "no releases"
    assert main(["rollback", "digits"]) == 1
    err = capsys.readouterr().err
    assert "has no versions" in err and "Traceback" not in err


def test_cellship_release_is_the_python_api_even_after_the_package_is_imported():
    import pytest

    import cellship
    import cellship.release.pipeline  # the subpackage is loaded: still callable
    from cellship.errors import UsageError

    with pytest.raises(UsageError, match="not usable in a URL"):
        cellship.release("nb.ipynb", model="no spaces please")
    assert cellship.rollback is cellship.release.pipeline.rollback


def test_release_needs_a_notebook_and_a_model_unless_it_resumes(capsys, tmp_path):
    assert main(["release", "--model", "digits"]) == 1
    assert "needs a NOTEBOOK and --model MODEL (or --resume MODEL" in capsys.readouterr().err
    assert main(["release", str(tmp_path / "nb.ipynb"), "--resume", "digits"]) == 1
    assert "--resume MODEL takes no NOTEBOOK" in capsys.readouterr().err
    assert main(["release", "--resume", "digits"]) == 0  # nothing interrupted: nothing to do
    captured = capsys.readouterr()
    assert captured.out == "" and "no interrupted release of digits" in captured.err


def test_cellship_release_resume_is_the_python_api():
    import cellship
    import cellship.release.pipeline

    assert cellship.release.resume("digits") == []  # nothing interrupted
