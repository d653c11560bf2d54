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
