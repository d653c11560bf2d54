"""The REST API of the Jupyter server extension, fuzzed from its own ``openapi.yaml`` by
schemathesis against a real ``jupyter lab`` on 127.0.0.1: every operation, schema-valid
and schema-violating input, with the token and without.

What must hold: never a 5xx; every response conforms to the contract (status codes and
bodies documented, errors in the ``{code, message}`` shape); without the token every
operation answers 403 in that shape. Every seeded job has ended, so a log stream that
follows one ends too. Half the cases that name a job are pointed at records that exist, so the fuzzer reaches past the 404.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Iterator

import pytest
import requests
import schemathesis
import tornado.web
from schemathesis.generation.modes import GenerationMode

from cellship.jupyter import OPENAPI
from cellship.store import Store
from tests.conftest import hide_clusters
from tests.fuzz.budget import examples, exploring
from tests.server.records import fake_job
from tests.ui.lab import Lab, running_lab

schema = schemathesis.openapi.from_path(OPENAPI)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=examples(25), database="none",
                                deterministic=not exploring())
ANSWERS: dict[str, dict[int, int]] = {}  # per test: how many answers of each status

# Checks that judge a response by itself; those that second-guess the API's choices (a
# schema-valid query the server rejects with a sentence, a stray query parameter it
# ignores) are not promises of this API.
CHECKS = [schemathesis.checks.not_a_server_error,
          schemathesis.specs.openapi.checks.status_code_conformance,
          schemathesis.specs.openapi.checks.content_type_conformance,
          schemathesis.specs.openapi.checks.response_schema_conformance]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("fuzz-root")
    # The fuzzer sends DELETE /deployments/{random name}: whatever cluster the machine's
    # kubeconfig or a pod's ServiceAccount names must be out of its reach.
    with pytest.MonkeyPatch.context() as env:
        hide_clusters(env, root)
        with running_lab(root) as server:
            yield server


@pytest.fixture(scope="module")
def seeded(lab: Lab) -> dict[str, list[str]]:
    """Finished jobs (with logs, files, a symlink out of the job dir) and a notebook the
    fuzzer's cases are pointed at."""
    store = Store(lab.home / "cellship.db")
    jobs = []
    for status in ("succeeded", "failed", "cancelled"):
        job = fake_job(store, lab.home, name=f"fuzz-{status}", status=status, workers=2,
                       logs={"worker-0": "a\nb\n", "worker-1": "c\n"})
        (Path(job.job_dir) / "escape").symlink_to("/etc")
        jobs.append(job.id)
    (lab.root / "nb.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                   "nbformat_minor": 5}))
    return {"job_id": jobs}


_TURN = itertools.count()


def _count(test: str, status: int) -> None:
    tally = ANSWERS.setdefault(test, {})
    tally[status] = tally.get(status, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print("REST fuzz answers by status:", json.dumps(ANSWERS, sort_keys=True))


def _aim(case: schemathesis.Case, seeded: dict[str, list[str]]) -> None:
    """Point every other case that names a job at a real one (never for DELETE, which
    would use the seeds up)."""
    if "job_id" in (case.path_parameters or {}) and case.method.upper() != "DELETE":
        turn = next(_TURN)
        if turn % 2:
            ids = seeded["job_id"]
            case.path_parameters["job_id"] = ids[turn % len(ids)]


def _error_shape(response: requests.Response | schemathesis.Response) -> None:
    body = json.loads(response.content)
    assert set(body) == {"code", "message"}, body
    assert body["code"] == response.status_code and isinstance(body["message"], str) and body["message"]


@schema.parametrize()
def test_with_the_token_no_5xx_and_every_answer_is_documented(case, lab: Lab, seeded) -> None:
    _aim(case, seeded)
    case.headers = {**{k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"},
                    "Authorization": f"token {lab.token}"}
    response = case.call(base_url=f"{lab.url}cellship/api", timeout=30)
    _count("with token", response.status_code)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        _error_shape(response)


@schema.parametrize()
def test_without_the_token_every_operation_is_403(case, lab: Lab, seeded) -> None:
    _aim(case, seeded)
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call(base_url=f"{lab.url}cellship/api", timeout=30)
    _count("without token", response.status_code)
    if case.method.upper() not in tornado.web.RequestHandler.SUPPORTED_METHODS:
        # not HTTP methods tornado serves: refused (405) before any handler exists
        assert response.status_code == 405, (case.method, response.status_code)
    elif response.status_code == 400 and response.content.startswith(b'{"code": 400, "message": "Invalid body'):
        # tornado parses a form body before any handler runs (and before authentication):
        # a malformed one is refused there, with nothing done
        assert "form" in case.headers.get("Content-Type", ""), case.headers
    else:
        assert response.status_code == 403, (case.method, response.status_code, response.content[:300])
    _error_shape(response)
    case.validate_response(response, checks=CHECKS)
