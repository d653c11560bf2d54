"""The release commands' refusals are sentences, never tracebacks."""

from __future__ import annotations

from cellship.cli.main import main


def test_a_broken_gate_is_refused_before_anything_runs(capsys, tmp_path):
    assert main(["release", str(tmp_path / "nb.ipynb"), "--model", "digits",
                 "--gate", "accuracy >= 0.9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellship: error: The gate 'accuracy >= 0.9' is not understood: a gate is")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_kubernetes_without_a_registry_or_base_says_how_to_fix_it(capsys, tmp_path):
    nb = str(tmp_path / "nb.ipynb")
    assert main(["release", nb, "--model", "digits", "--to", "kubernetes"]) == 1
    err = capsys.readouterr().err
    assert "--to kubernetes needs --registry HOST:PORT[/PREFIX]" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["release", nb, "--model", "digits", "--to", "kubernetes",
                 "--registry", "127.0.0.1:5000/team"]) == 1
    assert "--to kubernetes needs --base IMAGE" in capsys.readouterr().err
    assert main(["release", nb, "--model", "digits", "--to", "kubernetes",
                 "--registry", "not a registry", "--base", "x/y:1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("cellship: error:")


def test_kubernetes_flags_without_to_kubernetes_are_refused(capsys, tmp_path):
    assert main(["release", str(tmp_path / "nb.ipynb"), "--model", "digits",
                 "--replicas", "3", "--registry", "r:5000"]) == 1
    err = capsys.readouterr().err
    assert "--registry, --replicas go with --to kubernetes" in err, err


def test_a_model_name_kubernetes_cannot_use_is_refused_before_anything_runs(capsys, tmp_path):
    assert main(["release", str(tmp_path / "nb.ipynb"), "--model", "Digits_v1",
                 "--to", "kubernetes", "--registry", "127.0.0.1:5000", "--base", "b/p:1"]) == 1
    err = capsys.readouterr().err
    assert "cannot name a Kubernetes Service" in err and "Traceback" not in err


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


def test_cluster_flags_of_a_rollback_need_a_model_released_to_kubernetes(capsys):
    assert main(["rollback", "digits", "-n", "prod"]) == 1
    err = capsys.readouterr().err
    assert "--namespace only applies to a model released to Kubernetes" in err, err


def test_the_ci_definition_runs_the_same_kubernetes_release(capsys, tmp_path):
    out = tmp_path / "release.yml"
    assert main(["release", "nb.ipynb", "--model", "digits", "--to", "kubernetes",
                 "--registry", "r.example.com:5000/team", "--base", "r.example.com:5000/b:1",
                 "--deps-from-base", "--replicas", "3", "--canary", "25", "-n", "prod",
                 "--ci", "github", "--ci-output", str(out)]) == 0
    capsys.readouterr()
    assert ("cellship release nb.ipynb --model digits --to kubernetes --registry "
            "r.example.com:5000/team --base r.example.com:5000/b:1 --deps-from-base "
            "--namespace prod --replicas 3 --canary 25") in out.read_text()
