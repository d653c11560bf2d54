"""The CI definitions `cellship release --ci` writes: GitHub's and GitLab's validated with
check-jsonschema's built-in (vendored, offline) schemas; the Jenkinsfile by its structure.
Every one runs the same release command and reads secrets from its CI's store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cellship.cli.main import main
from cellship.release import cigen

COMMAND = cigen.ReleaseCommand("digits", ("train.ipynb", "--model", "digits", "--to", "local",
                                          "--gate", "metric:validation/epoch_accuracy >= 0.95",
                                          "-p", "epochs", "3"),
                               ("REGISTRY_PASSWORD", "KUBECONFIG_DATA"))
SHELL = ("cellship release train.ipynb --model digits --to local --gate "
         "'metric:validation/epoch_accuracy >= 0.95' -p epochs 3")


def _validate(schema: str, path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``check-jsonschema --builtin-schema SCHEMA PATH``, run in this process through its
    own command-line entry point: the same check as the command, without paying for its
    (slow) imports twice in two interpreters."""
    from check_jsonschema.cli.main_command import main as check_jsonschema

    code = check_jsonschema(["--builtin-schema", schema, str(path)], standalone_mode=False)
    out = capsys.readouterr()
    assert code == 0, out.out + out.err


def test_the_command_is_quoted_for_a_shell():
    assert COMMAND.shell == SHELL


def test_github_workflow_is_valid_and_reads_secrets_from_the_store(tmp_path, capsys):
    path = cigen.write("github", COMMAND, tmp_path / "release.yml")
    _validate("vendor.github-workflows", path, capsys)
    workflow = yaml.safe_load(path.read_text())
    assert list(workflow["jobs"]) == ["build", "test", "deploy"]
    step = workflow["jobs"]["deploy"]["steps"][-1]
    assert step["run"] == SHELL
    assert step["env"] == {"REGISTRY_PASSWORD": "${{ secrets.REGISTRY_PASSWORD }}",
                           "KUBECONFIG_DATA": "${{ secrets.KUBECONFIG_DATA }}"}


def test_gitlab_ci_is_valid_and_names_its_variables_without_values(tmp_path, capsys):
    path = cigen.write("gitlab", COMMAND, tmp_path / ".gitlab-ci.yml")
    _validate("vendor.gitlab-ci", path, capsys)
    pipeline = yaml.safe_load(path.read_text())
    assert pipeline["stages"] == ["build", "test", "deploy"]
    script = pipeline["deploy"]["script"]
    assert script[-1] == SHELL
    assert any('"$REGISTRY_PASSWORD"' in line for line in script)
    assert "variables" not in pipeline  # a secret's value is never in the file


def test_the_validator_does_refuse_a_broken_definition(tmp_path, capsys):
    broken = tmp_path / "broken.yml"
    broken.write_text("stages: 3\ndeploy: {script: 1}\n")
    with pytest.raises(AssertionError, match="is not of type 'array'"):
        _validate("vendor.gitlab-ci", broken, capsys)


def test_jenkinsfile_has_build_test_deploy_and_binds_credentials():
    text = cigen.generate("jenkins", COMMAND)
    assert text.count("pipeline {") == 1 and "agent any" in text
    assert re.findall(r"stage\('(\w+)'\)", text) == ["Build", "Test", "Deploy"]
    assert "REGISTRY_PASSWORD = credentials('registry-password')" in text
    assert "KUBECONFIG_DATA = credentials('kubeconfig-data')" in text
    deploy = text[text.index("stage('Deploy')"):]
    assert "cellship release train.ipynb --model digits" in deploy
    assert "\\'metric:validation/epoch_accuracy >= 0.95\\'" in deploy  # Groovy-quoted
    assert text.count("{") == text.count("}")


def test_the_cli_writes_each_ci_where_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["release", "nb.ipynb", "--model", "digits", "--gate", "record:acc > 0.9",
                 "--ci", "github", "--ci-secret", "TOKEN"]) == 0
    written = tmp_path / ".github" / "workflows" / "release-digits.yml"
    assert capsys.readouterr().out.strip() == str(written.relative_to(tmp_path))
    assert "${{ secrets.TOKEN }}" in written.read_text()
    assert main(["release", "nb.ipynb", "--model", "digits", "--ci", "jenkins",
                 "--ci-output", "ci/Jenkinsfile"]) == 0
    assert "stage('Deploy')" in (tmp_path / "ci" / "Jenkinsfile").read_text()
    assert main(["release", "nb.ipynb", "--model", "digits", "--ci", "gitlab",
                 "--ci-secret", "9bad"]) == 1
    assert "not an environment variable name" in capsys.readouterr().err
